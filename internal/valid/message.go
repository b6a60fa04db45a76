package valid

import (
	"fmt"
	"sort"
	"sync"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// messageLevelOnly makes protovalidate evaluate a message's own rules (its
// CEL expressions and message oneof rules) and skip every field, which the
// generated code has checked.
var messageLevelOnly = protovalidate.WithFilter(protovalidate.FilterFunc(
	func(_ protoreflect.Message, d protoreflect.Descriptor) bool {
		_, isMessage := d.(protoreflect.MessageDescriptor)
		return isMessage
	}))

// MessageRules reports whether m satisfies its message-level rules, which
// generated code cannot evaluate itself. When every one of them is a CEL rule
// with a Go form (RegisterRule), the Go forms answer; else protovalidate
// evaluates them.
func MessageRules(m proto.Message) bool {
	if forms := goFormsOf(m.ProtoReflect().Descriptor()); forms != nil {
		for _, f := range forms {
			if !f(m) {
				return false
			}
		}
		return true
	}
	return protovalidate.Validate(m, messageLevelOnly) == nil
}

// A RuleFunc is the Go form of a message-level CEL rule: it reports whether
// m satisfies the rule.
type RuleFunc func(m proto.Message) bool

type goForm struct {
	expression string
	fn         RuleFunc
}

var (
	mu      sync.Mutex
	goRules = map[string]goForm{} // by rule id
	byType  sync.Map              // protoreflect.MessageDescriptor → []RuleFunc; nil: protovalidate decides
)

// RegisterRule gives the message-level CEL rule id, whose expression is
// expression, a Go form, which MessageRules runs instead of CEL. A Go form
// is used only while the rule in the message's descriptor has exactly that
// expression, so a contract change cannot leave a stale one in force; the
// tests of internal/event check every Go form against protovalidate. Call it
// from an init function.
func RegisterRule(id, expression string, fn RuleFunc) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := goRules[id]; dup {
		panic(fmt.Sprintf("valid: rule %q registered twice", id))
	}
	goRules[id] = goForm{expression, fn}
}

// goFormsOf returns the Go forms of d's message-level rules, or nil when
// one of them has none.
func goFormsOf(d protoreflect.MessageDescriptor) []RuleFunc {
	if forms, ok := byType.Load(d); ok {
		return forms.([]RuleFunc)
	}
	mu.Lock()
	defer mu.Unlock()
	var forms []RuleFunc
	rules, _ := proto.GetExtension(d.Options(), validate.E_Message).(*validate.MessageRules)
	if len(rules.GetCelExpression()) == 0 && len(rules.GetOneof()) == 0 {
		for _, r := range rules.GetCel() {
			form, ok := goRules[r.GetId()]
			if !ok || form.expression != r.GetExpression() {
				forms = nil
				break
			}
			forms = append(forms, form.fn)
		}
	}
	byType.Store(d, forms)
	return forms
}

// StaleRules lists the registered Go forms that match no message-level rule
// of a message linked into the program: a rule renamed, changed or deleted
// since its Go form was written.
func StaleRules() []string {
	mu.Lock()
	defer mu.Unlock()
	type rule struct{ id, expression string }
	live := map[rule]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		var walk func(ms protoreflect.MessageDescriptors)
		walk = func(ms protoreflect.MessageDescriptors) {
			for i := range ms.Len() {
				rules, _ := proto.GetExtension(ms.Get(i).Options(), validate.E_Message).(*validate.MessageRules)
				for _, r := range rules.GetCel() {
					live[rule{r.GetId(), r.GetExpression()}] = true
				}
				walk(ms.Get(i).Messages())
			}
		}
		walk(f.Messages())
		return true
	})
	var stale []string
	for id, form := range goRules {
		if !live[rule{id, form.expression}] {
			stale = append(stale, id)
		}
	}
	sort.Strings(stale)
	return stale
}
