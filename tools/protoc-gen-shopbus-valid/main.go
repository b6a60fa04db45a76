// Command protoc-gen-shopbus-valid is a protoc plugin that generates, for
// every message of the files it is given (buf.gen.events.yaml gives it the
// envelope and the events), two methods without reflection:
//
//   - IsValid, a compiled form of the message's protovalidate rules. It is
//     the accept path of internal/event's validation; protovalidate stays the
//     authority: when IsValid reports false, it runs and names the
//     violations. A message whose rules include one this plugin does not
//     compile (a field-level CEL expression, a well-known format other than
//     uuid, a oneof rule …) gets no IsValid, and protovalidate checks it
//     alone; the generated file says which rule it was. Message-level CEL
//     rules are handed to protovalidate (internal/valid.MessageRules) after
//     the fields are checked.
//   - Plain, which reports whether every string in the message is valid
//     UTF-8, as proto3 requires, and no unknown field is in it. protobuf-go
//     checks UTF-8 when it encodes and decodes, and checks the unknown fields
//     it skips; vtprotobuf's generated code, which internal/event uses for
//     speed, does neither. internal/event takes vtprotobuf's work only for a
//     plain message, and protobuf-go's for any other.
//
// The rules IsValid compiles follow protovalidate's semantics: rules on a
// field without presence apply to its zero value too; a field with presence
// (a message, a proto3 optional) is checked only when set, unless required;
// IGNORE_IF_ZERO_VALUE skips a zero value; string lengths count runes.
// internal/event's tests hold IsValid to protovalidate's answer, and
// vtprotobuf with Plain to protobuf-go's, on every event.
package main

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"
)

const (
	validPackage = protogen.GoImportPath("github.com/shopbus/shopbus/internal/valid")
	utf8Package  = protogen.GoImportPath("unicode/utf8")
	mathPackage  = protogen.GoImportPath("math")
)

func main() {
	protogen.Options{}.Run(generate)
}

// generate writes the .valid.pb.go file of every file to generate.
func generate(plugin *protogen.Plugin) error {
	plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)
	c := &compiler{
		messages: map[protoreflect.FullName]*protogen.Message{},
		state:    map[protoreflect.FullName]*state{},
		plain:    map[protoreflect.FullName]*state{},
	}
	for _, f := range plugin.Files {
		if f.Generate {
			for _, m := range allMessages(f.Messages) {
				c.messages[m.Desc.FullName()] = m
			}
		}
	}
	for _, f := range plugin.Files {
		if f.Generate {
			c.generate(plugin, f)
		}
	}
	return nil
}

func allMessages(ms []*protogen.Message) []*protogen.Message {
	var all []*protogen.Message
	for _, m := range ms {
		if m.Desc.IsMapEntry() {
			continue
		}
		all = append(all, m)
		all = append(all, allMessages(m.Messages)...)
	}
	return all
}

// state is what the compiler knows of one message: whether any rule applies
// to it or to a message inside it (needed), and why it cannot be compiled
// (unsupported, empty when it can).
type state struct {
	done        bool
	needed      bool
	unsupported string
}

type compiler struct {
	messages map[protoreflect.FullName]*protogen.Message // those generated here
	state    map[protoreflect.FullName]*state            // of IsValid
	plain    map[protoreflect.FullName]*state            // of Plain
}

// unsupportedError carries the reason a message gets no IsValid.
type unsupportedError string

func (e unsupportedError) Error() string { return string(e) }

func unsupported(format string, args ...any) error {
	return unsupportedError(fmt.Sprintf(format, args...))
}

// inspect fills in the state of message d.
func (c *compiler) inspect(d protoreflect.MessageDescriptor) *state {
	if s, ok := c.state[d.FullName()]; ok {
		if !s.done { // a recursive message: keep it simple
			s.unsupported = "a recursive message type"
		}
		return s
	}
	s := &state{}
	c.state[d.FullName()] = s
	defer func() { s.done = true }()

	if rules := messageRules(d); rules != nil {
		if err := checkMessageRules(rules); err != nil {
			s.unsupported = err.Error()
			return s
		}
		s.needed = true
	}
	for i := range d.Oneofs().Len() {
		o := d.Oneofs().Get(i)
		if r, ok := proto.GetExtension(o.Options(), validate.E_Oneof).(*validate.OneofRules); ok && r != nil && len(setFields(r)) > 0 {
			s.unsupported = fmt.Sprintf("oneof %s has rules", o.Name())
			return s
		}
	}
	for i := range d.Fields().Len() {
		f := d.Fields().Get(i)
		rules := fieldRules(f)
		inner := c.innerMessage(f)
		if rules == nil && inner == nil {
			continue
		}
		if rules.GetIgnore() == validate.Ignore_IGNORE_ALWAYS {
			continue
		}
		s.needed = true
		if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
			s.unsupported = fmt.Sprintf("field %s in oneof %s has rules", f.Name(), o.Name())
			return s
		}
		if f.IsMap() {
			s.unsupported = fmt.Sprintf("map field %s has rules", f.Name())
			return s
		}
		if inner != nil {
			if is := c.inspect(inner); is.unsupported != "" {
				s.unsupported = fmt.Sprintf("field %s: %s: %s", f.Name(), inner.FullName(), is.unsupported)
				return s
			}
			if _, ok := c.messages[inner.FullName()]; !ok {
				s.unsupported = fmt.Sprintf("field %s: %s has rules but no IsValid", f.Name(), inner.FullName())
				return s
			}
		}
		if _, err := (&emitter{c: c}).field(f, rules, "_"); err != nil {
			s.unsupported = fmt.Sprintf("field %s: %s", f.Name(), err)
			return s
		}
	}
	return s
}

// innerMessage returns the message type of f, or of f's elements, when a rule
// applies inside it.
func (c *compiler) innerMessage(f protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if f.IsMap() {
		if v := f.MapValue(); v.Message() != nil && c.needs(v.Message()) {
			return v.Message()
		}
		return nil
	}
	if m := f.Message(); m != nil && c.needs(m) {
		return m
	}
	return nil
}

// needs reports whether any rule applies to d or inside it.
func (c *compiler) needs(d protoreflect.MessageDescriptor) bool {
	s := c.inspect(d)
	return s.needed || s.unsupported != ""
}

func messageRules(d protoreflect.MessageDescriptor) *validate.MessageRules {
	r, _ := proto.GetExtension(d.Options(), validate.E_Message).(*validate.MessageRules)
	if r == nil || len(setFields(r)) == 0 {
		return nil
	}
	return r
}

func checkMessageRules(r *validate.MessageRules) error {
	for _, name := range setFields(r) {
		switch name {
		case "cel", "cel_expression", "oneof": // evaluated by protovalidate
		default:
			return unsupported("message rule %s", name)
		}
	}
	return nil
}

func fieldRules(f protoreflect.FieldDescriptor) *validate.FieldRules {
	r, _ := proto.GetExtension(f.Options(), validate.E_Field).(*validate.FieldRules)
	if r == nil || len(setFields(r)) == 0 {
		return nil
	}
	return r
}

// setFields lists the names of m's populated fields. An extension (a
// predefined rule) is named "(<full name>)", and fields this plugin's copy
// of validate.proto does not know, "(unknown fields)": no rule compiles
// them, so a message using one gets no IsValid.
func setFields(m proto.Message) []string {
	var names []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.IsExtension() {
			names = append(names, "("+string(fd.FullName())+")")
		} else {
			names = append(names, string(fd.Name()))
		}
		return true
	})
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		names = append(names, "(unknown fields)")
	}
	sort.Strings(names)
	return names
}

// checkFieldRules refuses a FieldRules that sets anything but required,
// ignore and type rules.
func checkFieldRules(r *validate.FieldRules) error {
	if r == nil {
		return nil
	}
	for _, name := range setFields(r) {
		switch {
		case name == "required", name == "ignore":
		case name == "cel", name == "cel_expression":
			return unsupported("a CEL rule")
		case typeOneof.Fields().ByName(protoreflect.Name(name)) != nil:
		default:
			return unsupported("field rule %s", name)
		}
	}
	return nil
}

func (c *compiler) generate(plugin *protogen.Plugin, file *protogen.File) {
	g := plugin.NewGeneratedFile(file.GeneratedFilenamePrefix+".valid.pb.go", file.GoImportPath)
	g.P("// Code generated by protoc-gen-shopbus-valid. DO NOT EDIT.")
	g.P("// source: ", file.Desc.Path())
	g.P()
	g.P("package ", file.GoPackageName)
	patterns := &patternVars{g: g}
	for _, m := range allMessages(file.Messages) {
		s := c.inspect(m.Desc)
		g.P()
		if s.unsupported != "" {
			g.P("// ", m.GoIdent.GoName, " has no IsValid: ", s.unsupported, ". protovalidate checks it alone.")
			continue
		}
		e := &emitter{c: c, g: g, patterns: patterns}
		g.P("// IsValid reports whether x satisfies the protovalidate rules of")
		g.P("// ", m.Desc.FullName(), " (and of the messages in it), without reflection.")
		g.P("// When it reports false, protovalidate names the violations.")
		g.P("func (x *", m.GoIdent, ") IsValid() bool {")
		g.P("if x == nil {")
		g.P("return false")
		g.P("}")
		for _, f := range m.Fields {
			rules := fieldRules(f.Desc)
			if rules.GetIgnore() == validate.Ignore_IGNORE_ALWAYS {
				continue
			}
			lines, err := e.field(f.Desc, rules, "x."+f.GoName)
			if err != nil { // inspect accepted it; this is a bug here
				panic(fmt.Sprintf("%s: %v", f.Desc.FullName(), err))
			}
			for _, l := range lines {
				g.P(l)
			}
		}
		if messageRules(m.Desc) != nil {
			g.P("if !", g.QualifiedGoIdent(validPackage.Ident("MessageRules")), "(x) {")
			g.P("return false")
			g.P("}")
		}
		g.P("return true")
		g.P("}")
	}
	for _, m := range allMessages(file.Messages) {
		c.generatePlain(g, m)
	}
	patterns.declare()
}

// inspectPlain reports why Plain cannot be generated for message d, if it
// cannot.
func (c *compiler) inspectPlain(d protoreflect.MessageDescriptor) *state {
	if s, ok := c.plain[d.FullName()]; ok {
		if !s.done {
			s.unsupported = "a recursive message type"
		}
		return s
	}
	s := &state{}
	c.plain[d.FullName()] = s
	defer func() { s.done = true }()
	if d.ParentFile().Syntax() != protoreflect.Proto3 {
		s.unsupported = "not proto3"
		return s
	}
	for i := range d.Fields().Len() {
		f := d.Fields().Get(i)
		switch {
		case f.IsMap(): // vtprotobuf writes a map in Go's random order
			s.unsupported = fmt.Sprintf("map field %s", f.Name())
		case f.ContainingOneof() != nil && !f.ContainingOneof().IsSynthetic():
			if f.Kind() == protoreflect.StringKind || f.Message() != nil || isFloat(f) {
				s.unsupported = fmt.Sprintf("field %s in oneof %s is a string, a message or a float", f.Name(), f.ContainingOneof().Name())
			}
		case f.Message() != nil:
			if _, ok := c.messages[f.Message().FullName()]; ok {
				if is := c.inspectPlain(f.Message()); is.unsupported != "" {
					s.unsupported = fmt.Sprintf("field %s: %s", f.Name(), is.unsupported)
				}
			} else if !flat(f.Message()) {
				s.unsupported = fmt.Sprintf("field %s: %s is not generated here and holds more than integers and bytes", f.Name(), f.Message().FullName())
			}
		}
		if s.unsupported != "" {
			return s
		}
	}
	return s
}

// flat reports whether message d holds only integers, booleans, enums and
// bytes, as google.protobuf.Timestamp does: then a Plain check of it needs
// only its unknown fields, which vtprotobuf's well-known-type code drops.
func flat(d protoreflect.MessageDescriptor) bool {
	for i := range d.Fields().Len() {
		f := d.Fields().Get(i)
		if f.IsMap() || f.Message() != nil || f.Kind() == protoreflect.StringKind || isFloat(f) {
			return false
		}
	}
	return true
}

func isFloat(f protoreflect.FieldDescriptor) bool {
	return f.Kind() == protoreflect.DoubleKind || f.Kind() == protoreflect.FloatKind
}

// generatePlain writes m's Plain method, or says why there is none.
func (c *compiler) generatePlain(g *protogen.GeneratedFile, m *protogen.Message) {
	g.P()
	if s := c.inspectPlain(m.Desc); s.unsupported != "" {
		g.P("// ", m.GoIdent.GoName, " has no Plain: ", s.unsupported, ". protobuf-go encodes and decodes it.")
		return
	}
	validString := g.QualifiedGoIdent(utf8Package.Ident("ValidString"))
	g.P("// Plain reports whether x, and every message in it, holds no unknown field,")
	g.P("// only valid UTF-8 strings, as proto3 requires, and no -0.0 in a float")
	g.P("// without presence. vtprotobuf reads and writes a plain message exactly as")
	g.P("// protobuf-go does.")
	g.P("func (x *", m.GoIdent, ") Plain() bool {")
	g.P("if x == nil {")
	g.P("return true")
	g.P("}")
	g.P(ifFail("len(x.unknownFields) > 0"))
	for _, f := range m.Fields {
		var check func(v string) string
		switch {
		case f.Desc.Kind() == protoreflect.StringKind:
			check = func(v string) string { return "!" + validString + "(" + v + ")" }
		case f.Desc.Message() != nil:
			if _, ok := c.messages[f.Desc.Message().FullName()]; ok {
				check = func(v string) string { return "!" + v + ".Plain()" }
			} else { // flat (inspectPlain checked): only its unknown fields
				check = func(v string) string { return v + " != nil && len(" + v + ".ProtoReflect().GetUnknown()) > 0" }
			}
		case isFloat(f.Desc) && !f.Desc.HasPresence() && !f.Desc.IsList():
			// vtprotobuf leaves out -0.0 as if it were 0; protobuf-go writes it.
			check = func(v string) string {
				return v + " == 0 && " + g.QualifiedGoIdent(mathPackage.Ident("Signbit")) + "(float64(" + v + "))"
			}
		default:
			continue
		}
		v := "x." + f.GoName
		switch {
		case f.Desc.IsList():
			g.P("for _, v := range ", v, " {")
			g.P(ifFail(check("v")))
			g.P("}")
		case f.Desc.HasPresence() && f.Desc.Message() == nil:
			g.P(ifFail(v + " != nil && " + check("*"+v)))
		default:
			g.P(ifFail(check(v)))
		}
	}
	g.P("return true")
	g.P("}")
}

// patternVars declares one compiled pattern per distinct expression.
type patternVars struct {
	g     *protogen.GeneratedFile
	exprs []string
}

func (p *patternVars) name(expr string) string {
	for i, e := range p.exprs {
		if e == expr {
			return fmt.Sprintf("pattern%d", i)
		}
	}
	p.exprs = append(p.exprs, expr)
	return fmt.Sprintf("pattern%d", len(p.exprs)-1)
}

func (p *patternVars) declare() {
	if len(p.exprs) == 0 {
		return
	}
	p.g.P()
	p.g.P("// The string.pattern rules of this file.")
	p.g.P("var (")
	for i, e := range p.exprs {
		p.g.P(fmt.Sprintf("pattern%d = ", i), p.g.QualifiedGoIdent(validPackage.Ident("MustCompile")), "(", strconv.Quote(e), ")")
	}
	p.g.P(")")
}

// emitter writes the checks of one message. With g nil it only reports
// whether it could (inspect uses it so).
type emitter struct {
	c        *compiler
	g        *protogen.GeneratedFile
	patterns *patternVars
}

func (e *emitter) ident(path protogen.GoImportPath, name string) string {
	if e.g == nil {
		return name
	}
	return e.g.QualifiedGoIdent(path.Ident(name))
}

func (e *emitter) pattern(expr string) string {
	if e.patterns == nil {
		return "pattern"
	}
	return e.patterns.name(expr)
}

// field returns the Go statements that return false when the field at v
// breaks its rules.
func (e *emitter) field(f protoreflect.FieldDescriptor, rules *validate.FieldRules, v string) ([]string, error) {
	if err := checkFieldRules(rules); err != nil {
		return nil, err
	}
	inner := e.c.innerMessage(f)
	if f.IsList() {
		return e.list(f, rules, inner, v)
	}
	fails, err := e.value(f, rules, inner, elem(f, v))
	if err != nil {
		return nil, err
	}
	var out []string
	switch {
	case f.HasPresence(): // a message or a proto3 optional: rules apply when set
		switch {
		case rules.GetRequired():
			out = append(out, ifFail(append([]string{v + " == nil"}, fails...)...))
		case len(fails) > 0:
			out = append(out, "if "+v+" != nil {", ifFail(fails...), "}")
		}
	default:
		zero, err := e.zeroTest(f, v, false)
		if err != nil {
			return nil, err
		}
		if rules.GetRequired() {
			fails = append([]string{zero}, fails...)
		}
		if len(fails) == 0 {
			return nil, nil
		}
		if rules.GetIgnore() == validate.Ignore_IGNORE_IF_ZERO_VALUE && !rules.GetRequired() {
			return []string{"if !(" + zero + ") {", ifFail(fails...), "}"}, nil
		}
		out = append(out, ifFail(fails...))
	}
	return out, nil
}

// elem is the Go expression of f's value when it is set.
func elem(f protoreflect.FieldDescriptor, v string) string {
	if f.HasPresence() && f.Message() == nil {
		return "*" + v
	}
	return v
}

func (e *emitter) list(f protoreflect.FieldDescriptor, rules *validate.FieldRules, inner protoreflect.MessageDescriptor, v string) ([]string, error) {
	var fails []string
	if rules.GetRequired() {
		fails = append(fails, "len("+v+") == 0")
	}
	var items *validate.FieldRules
	if t := rules.GetType(); t != nil {
		r := rules.GetRepeated()
		if r == nil {
			return nil, unsupported("%s rules on a repeated field", typeName(rules))
		}
		for _, name := range setFields(r) {
			switch name {
			case "min_items":
				fails = append(fails, fmt.Sprintf("len(%s) < %d", v, r.GetMinItems()))
			case "max_items":
				fails = append(fails, fmt.Sprintf("len(%s) > %d", v, r.GetMaxItems()))
			case "items":
				items = r.GetItems()
			default:
				return nil, unsupported("repeated rule %s", name)
			}
		}
	}
	if rules.GetIgnore() == validate.Ignore_IGNORE_IF_ZERO_VALUE && !rules.GetRequired() && len(fails) > 0 {
		fails = []string{fmt.Sprintf("len(%s) > 0 && (%s)", v, strings.Join(fails, " || "))}
	}
	var out []string
	if len(fails) > 0 {
		out = append(out, ifFail(fails...))
	}
	if err := checkFieldRules(items); err != nil {
		return nil, fmt.Errorf("items: %w", err)
	}
	if items.GetRequired() {
		return nil, unsupported("a required rule on items")
	}
	if items.GetIgnore() == validate.Ignore_IGNORE_ALWAYS {
		items = nil
	}
	each, err := e.value(f, items, inner, "v")
	if err != nil {
		return nil, err
	}
	if len(each) > 0 {
		out = append(out, "for _, v := range "+v+" {")
		if items.GetIgnore() == validate.Ignore_IGNORE_IF_ZERO_VALUE {
			zero, err := e.zeroTest(f, "v", true)
			if err != nil {
				return nil, err
			}
			each = []string{"!(" + zero + ") && (" + strings.Join(each, " || ") + ")"}
		}
		out = append(out, ifFail(each...), "}")
	}
	return out, nil
}

// value returns the conditions under which a value v of f's kind breaks
// rules' type rules, or the rules of its message type.
func (e *emitter) value(f protoreflect.FieldDescriptor, rules *validate.FieldRules, inner protoreflect.MessageDescriptor, v string) ([]string, error) {
	var fails []string
	if inner != nil {
		fails = append(fails, "!"+v+".IsValid()")
	}
	if rules.GetType() == nil {
		return fails, nil
	}
	if f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.GroupKind {
		return nil, unsupported("%s rules on a message field", typeName(rules))
	}
	kind := kindRules[f.Kind()]
	if typeName(rules) != kind {
		return nil, unsupported("%s rules on a %s field", typeName(rules), f.Kind())
	}
	switch kind {
	case "string":
		more, err := e.stringRules(rules.GetString(), v)
		return append(fails, more...), err
	case "bytes":
		more, err := bytesRules(rules.GetBytes(), v)
		return append(fails, more...), err
	case "enum":
		more, err := enumRules(rules.GetEnum(), f.Enum(), v)
		return append(fails, more...), err
	case "bool":
		r := rules.GetBool()
		for _, name := range setFields(r) {
			if name != "const" {
				return nil, unsupported("bool rule %s", name)
			}
		}
		if r.Const != nil {
			fails = append(fails, fmt.Sprintf("%s != %t", v, r.GetConst()))
		}
		return fails, nil
	default:
		more, err := e.numberRules(rules.ProtoReflect().Get(rules.ProtoReflect().WhichOneof(typeOneof)).Message(), f.Kind(), v)
		return append(fails, more...), err
	}
}

var typeOneof = (&validate.FieldRules{}).ProtoReflect().Descriptor().Oneofs().ByName("type")

// typeName is the name of rules' type rules: "string", "int64" …
func typeName(rules *validate.FieldRules) string {
	fd := rules.ProtoReflect().WhichOneof(typeOneof)
	if fd == nil {
		return ""
	}
	return string(fd.Name())
}

// kindRules names the type rules that apply to each scalar kind.
var kindRules = map[protoreflect.Kind]string{
	protoreflect.StringKind: "string", protoreflect.BytesKind: "bytes", protoreflect.BoolKind: "bool",
	protoreflect.EnumKind: "enum", protoreflect.DoubleKind: "double", protoreflect.FloatKind: "float",
	protoreflect.Int32Kind: "int32", protoreflect.Int64Kind: "int64", protoreflect.Uint32Kind: "uint32",
	protoreflect.Uint64Kind: "uint64", protoreflect.Sint32Kind: "sint32", protoreflect.Sint64Kind: "sint64",
	protoreflect.Fixed32Kind: "fixed32", protoreflect.Fixed64Kind: "fixed64", protoreflect.Sfixed32Kind: "sfixed32",
	protoreflect.Sfixed64Kind: "sfixed64",
}

func (e *emitter) stringRules(r *validate.StringRules, v string) ([]string, error) {
	var fails []string
	for _, name := range setFields(r) {
		switch name {
		case "const":
			fails = append(fails, fmt.Sprintf("%s != %s", v, strconv.Quote(r.GetConst())))
		case "len":
			fails = append(fails, fmt.Sprintf("%s(%s) != %d", e.ident(utf8Package, "RuneCountInString"), v, r.GetLen()))
		case "min_len":
			if n := r.GetMinLen(); n <= 1<<20 { // a rune takes at most 4 bytes: 4n bytes hold at least n runes
				fails = append(fails, fmt.Sprintf("(len(%s) < %d && %s(%s) < %d)", v, 4*n, e.ident(utf8Package, "RuneCountInString"), v, n))
			} else {
				fails = append(fails, fmt.Sprintf("%s(%s) < %d", e.ident(utf8Package, "RuneCountInString"), v, n))
			}
		case "max_len": // no more bytes than n means no more runes
			fails = append(fails, fmt.Sprintf("(len(%s) > %d && %s(%s) > %d)", v, r.GetMaxLen(), e.ident(utf8Package, "RuneCountInString"), v, r.GetMaxLen()))
		case "len_bytes":
			fails = append(fails, fmt.Sprintf("len(%s) != %d", v, r.GetLenBytes()))
		case "min_bytes":
			fails = append(fails, fmt.Sprintf("len(%s) < %d", v, r.GetMinBytes()))
		case "max_bytes":
			fails = append(fails, fmt.Sprintf("len(%s) > %d", v, r.GetMaxBytes()))
		case "pattern":
			fails = append(fails, fmt.Sprintf("!%s.MatchString(%s)", e.pattern(r.GetPattern()), v))
		case "uuid":
			if r.GetUuid() {
				fails = append(fails, fmt.Sprintf("!%s(%s)", e.ident(validPackage, "UUID"), v))
			}
		case "in":
			fails = append(fails, "!("+oneOf(v, quoteAll(r.GetIn()))+")")
		case "not_in":
			fails = append(fails, oneOf(v, quoteAll(r.GetNotIn())))
		case "example":
		default:
			return nil, unsupported("string rule %s", name)
		}
	}
	return fails, nil
}

func bytesRules(r *validate.BytesRules, v string) ([]string, error) {
	var fails []string
	for _, name := range setFields(r) {
		switch name {
		case "len":
			fails = append(fails, fmt.Sprintf("len(%s) != %d", v, r.GetLen()))
		case "min_len":
			fails = append(fails, fmt.Sprintf("len(%s) < %d", v, r.GetMinLen()))
		case "max_len":
			fails = append(fails, fmt.Sprintf("len(%s) > %d", v, r.GetMaxLen()))
		case "example":
		default:
			return nil, unsupported("bytes rule %s", name)
		}
	}
	return fails, nil
}

func enumRules(r *validate.EnumRules, d protoreflect.EnumDescriptor, v string) ([]string, error) {
	var fails []string
	for _, name := range setFields(r) {
		switch name {
		case "const":
			fails = append(fails, fmt.Sprintf("%s != %d", v, r.GetConst()))
		case "defined_only":
			if r.GetDefinedOnly() {
				var defined []string
				for i := range d.Values().Len() {
					defined = append(defined, strconv.Itoa(int(d.Values().Get(i).Number())))
				}
				fails = append(fails, "!("+oneOf(v, defined)+")")
			}
		case "in":
			fails = append(fails, "!("+oneOf(v, itoaAll(r.GetIn()))+")")
		case "not_in":
			fails = append(fails, oneOf(v, itoaAll(r.GetNotIn())))
		case "example":
		default:
			return nil, unsupported("enum rule %s", name)
		}
	}
	return fails, nil
}

// numberRules compiles the rules of an integer or floating-point field. A
// range whose bounds are inverted (protovalidate's "outside" ranges) is not
// compiled.
func (e *emitter) numberRules(r protoreflect.Message, kind protoreflect.Kind, v string) ([]string, error) {
	float := kind == protoreflect.DoubleKind || kind == protoreflect.FloatKind
	var fails []string
	var lower, upper protoreflect.Value
	var hasLower, hasUpper bool
	for _, name := range setFields(r.Interface()) { // sorted: the output must not vary
		val := r.Get(r.Descriptor().Fields().ByName(protoreflect.Name(name)))
		switch name {
		case "gt", "gte":
			lower, hasLower = val, true
			fails = append(fails, fmt.Sprintf("!(%s %s %s)", v, map[string]string{"gt": ">", "gte": ">="}[name], literal(val, kind)))
		case "lt", "lte":
			upper, hasUpper = val, true
			fails = append(fails, fmt.Sprintf("!(%s %s %s)", v, map[string]string{"lt": "<", "lte": "<="}[name], literal(val, kind)))
		case "const":
			fails = append(fails, fmt.Sprintf("!(%s == %s)", v, literal(val, kind)))
		case "finite":
			if val.Bool() {
				fails = append(fails, fmt.Sprintf("%s(float64(%s)) || %s(float64(%s), 0)", e.ident(mathPackage, "IsNaN"), v, e.ident(mathPackage, "IsInf"), v))
			}
		case "in", "not_in":
			if float {
				return nil, unsupported("%s rule %s", kind, name)
			}
			var values []string
			for i := range val.List().Len() {
				values = append(values, literal(val.List().Get(i), kind))
			}
			if name == "in" {
				fails = append(fails, "!("+oneOf(v, values)+")")
			} else {
				fails = append(fails, oneOf(v, values))
			}
		case "example":
		default:
			return nil, unsupported("%s rule %s", kind, name)
		}
	}
	if hasLower && hasUpper && !less(lower, upper, kind) {
		return nil, unsupported("an inverted (exclusive) %s range", kind)
	}
	return fails, nil
}

func literal(v protoreflect.Value, kind protoreflect.Kind) string {
	switch kind {
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10)
	default:
		return strconv.FormatInt(v.Int(), 10)
	}
}

func less(a, b protoreflect.Value, kind protoreflect.Kind) bool {
	switch kind {
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		return a.Float() < b.Float()
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return a.Uint() < b.Uint()
	default:
		return a.Int() < b.Int()
	}
}

// zeroTest is the Go condition that v, a value of f without presence (or an
// element of f when item), is its zero value as protovalidate sees it: a
// field's by protobuf-go's Has, which tells -0.0 from 0, a list element's by
// equality, which does not.
func (e *emitter) zeroTest(f protoreflect.FieldDescriptor, v string, item bool) (string, error) {
	switch f.Kind() {
	case protoreflect.StringKind:
		return v + ` == ""`, nil
	case protoreflect.BytesKind:
		return "len(" + v + ") == 0", nil
	case protoreflect.BoolKind:
		return "!" + v, nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return v + " == nil", nil
	case protoreflect.EnumKind:
		if f.Enum().Values().Get(0).Number() != 0 {
			return "", unsupported("an enum whose first value is not 0")
		}
		return v + " == 0", nil
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		if item {
			return v + " == 0", nil
		}
		return e.ident(mathPackage, "Float64bits") + "(float64(" + v + ")) == 0", nil
	default:
		return v + " == 0", nil
	}
}

// ifFail returns a statement that returns false when any of conds holds.
func ifFail(conds ...string) string {
	var unique []string
	for _, c := range conds {
		if !slices.Contains(unique, c) { // required and not_in [0] say the same
			unique = append(unique, c)
		}
	}
	return "if " + strings.Join(unique, " || ") + " {\nreturn false\n}"
}

func oneOf(v string, values []string) string {
	if len(values) == 0 {
		return "false"
	}
	terms := make([]string, len(values))
	for i, x := range values {
		terms[i] = v + " == " + x
	}
	return strings.Join(terms, " || ")
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

func itoaAll(ns []int32) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = strconv.Itoa(int(n))
	}
	return out
}
