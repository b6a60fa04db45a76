package event

import (
	"bytes"
	"fmt"
	"sync"

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

// vtMessage is implemented by the envelope and every event: vtprotobuf's
// encoding, generated without reflection, and Plain, which says when that
// encoding is protobuf-go's (buf.gen.events.yaml).
type vtMessage interface {
	MarshalVT() ([]byte, error)
	MarshalToSizedBufferVT([]byte) (int, error)
	SizeVT() int
	UnmarshalVT([]byte) error
	Plain() bool
}

// marshal encodes msg as protobuf-go would. The generated encoder takes a
// plain message (valid UTF-8, no unknown fields); protobuf-go takes any
// other, and refuses one with a string that is not UTF-8, naming the field.
// TestCodecAgreesWithProtobufGo holds the two to the same bytes.
func marshal(msg proto.Message) ([]byte, error) {
	if vt, ok := msg.(vtMessage); ok && fastPath.Load() && vt.Plain() {
		return vt.MarshalVT()
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(msg)
}

// unmarshal decodes b into msg, a new message, as protobuf-go would. The
// generated decoder's answer is taken when it gives a plain message and b is
// exactly that message's encoding, as every shopbus producer writes it: then
// nothing in b was malformed in a way vtprotobuf overlooks (a string that is
// not UTF-8, a broken group in an unknown field), skipped (vtprotobuf drops
// unknown fields inside well-known types such as Timestamp) or read
// otherwise. protobuf-go decides, and explains, anything else. FuzzDecode
// holds unmarshal to proto.Unmarshal.
func unmarshal(b []byte, msg proto.Message) error {
	if vt, ok := msg.(vtMessage); ok && fastPath.Load() && vt.UnmarshalVT(b) == nil && vt.Plain() && encodesTo(vt, b) {
		return nil
	}
	return proto.Unmarshal(b, msg)
}

// encodesTo reports whether msg encodes to exactly b.
func encodesTo(msg vtMessage, b []byte) bool {
	if msg.SizeVT() != len(b) {
		return false
	}
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	if cap(*buf) < len(b) {
		*buf = make([]byte, len(b))
	}
	n, err := msg.MarshalToSizedBufferVT((*buf)[:len(b)])
	return err == nil && n == len(b) && bytes.Equal((*buf)[:len(b)], b)
}

// buffers holds the scratch space of encodesTo.
var buffers = sync.Pool{New: func() any { return new([]byte) }}
