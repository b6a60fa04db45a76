package event

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
)

// Encode returns env in protobuf binary encoding. It does not validate: New
// did, and Decode does on the consumer's side.
func Encode(env *eventv1.Envelope) ([]byte, error) {
	b, err := marshal(env)
	if err != nil {
		return nil, fmt.Errorf("%w: encode envelope: %w", ErrMalformed, err)
	}
	return b, nil
}

// maxEnvelopeSize bounds what Decode accepts: the largest payload the
// envelope allows plus room for its other fields.
const maxEnvelopeSize = 1<<20 + 4096

// Decode parses and validates an Envelope. It does not look at the payload:
// Open does. Errors wrap ErrMalformed or ErrInvalid.
func Decode(b []byte) (*eventv1.Envelope, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	if len(b) > maxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte envelope limit", ErrMalformed, len(b), maxEnvelopeSize)
	}
	env := &eventv1.Envelope{}
	if err := unmarshal(b, env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	if err := validate(envelopeName, env); err != nil {
		return nil, err
	}
	return env, nil
}

// Peek parses an Envelope without validating it, for a producer's own
// outbox rows: New validated each when it was made, and the consumers
// validate it again on the way in, so a relay need not pay for a third
// check to read the headers it sends. Errors wrap ErrMalformed.
func Peek(b []byte) (*eventv1.Envelope, error) {
	if len(b) == 0 || len(b) > maxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes, want 1 to %d", ErrMalformed, len(b), maxEnvelopeSize)
	}
	env := &eventv1.Envelope{}
	if err := unmarshal(b, env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	return env, nil
}

// Open decodes and validates env's payload as the message its type and
// version name. Errors wrap ErrUnknownType, ErrMalformed or ErrInvalid.
func Open(env *eventv1.Envelope) (proto.Message, Spec, error) {
	return open(env.GetType(), env.GetVersion(), env.GetPayload())
}

func open(name string, version uint32, payload []byte) (proto.Message, Spec, error) {
	spec, err := Lookup(name, version)
	if err != nil {
		return nil, Spec{}, err
	}
	msg := spec.Message.New().Interface()
	if err := unmarshal(payload, msg); err != nil {
		return nil, Spec{}, fmt.Errorf("%w: %s payload: %w", ErrMalformed, spec, err)
	}
	if err := validate(spec, msg); err != nil {
		return nil, Spec{}, err
	}
	return msg, spec, nil
}

// marshal encodes msg deterministically with protobuf-go: the same message
// always gives the same bytes.
func marshal(msg proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(msg)
}

// unmarshal decodes b into msg, a new message, with protobuf-go.
func unmarshal(b []byte, msg proto.Message) error {
	return proto.Unmarshal(b, msg)
}
