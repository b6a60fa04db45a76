package event

import (
	"fmt"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
)

// Validate checks msg, an envelope or an event, against its protovalidate
// rules. The error wraps ErrInvalid and a *protovalidate.ValidationError whose
// violations name each offending field.
func Validate(msg proto.Message) error {
	return validate(named(msg.ProtoReflect().Descriptor().FullName()), msg)
}

// validate is Validate naming what was validated ("envelope",
// "order.created.v2") in its error. protovalidate names the violations. It
// is generic so that what is made an interface only when msg is invalid.
func validate[S fmt.Stringer](what S, msg proto.Message) error {
	if err := protovalidate.Validate(msg); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
	}
	return nil
}

// named is a constant fmt.Stringer.
type named string

// String returns n.
func (n named) String() string { return string(n) }

const envelopeName = named("envelope")
