package valid

import (
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
// generated code cannot evaluate itself.
func MessageRules(m proto.Message) bool {
	return protovalidate.Validate(m, messageLevelOnly) == nil
}
