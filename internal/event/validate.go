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
	if err := protovalidate.Validate(msg); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// validate is Validate naming what was validated ("envelope",
// "order.created.v2") in its error.
func validate(what fmt.Stringer, msg proto.Message) error {
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
