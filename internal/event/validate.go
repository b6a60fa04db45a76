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
	return validate(string(msg.ProtoReflect().Descriptor().FullName()), msg)
}

func validate(what string, msg proto.Message) error {
	if err := protovalidate.Validate(msg); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
	}
	return nil
}
