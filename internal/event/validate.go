package event

import (
	"fmt"
	"sync/atomic"

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
// "order.created.v2") in its error.
func validate[S fmt.Stringer](what S, msg proto.Message) error {
	if isValid(msg) {
		return nil
	}
	return explain(what, msg)
}

// isValid is the fast path: the IsValid method that
// tools/protoc-gen-shopbus-valid generates for the envelope and every event
// from its protovalidate rules. It only ever accepts; TestIsValidAgrees holds
// it to protovalidate's answer.
func isValid(msg proto.Message) bool {
	c, ok := msg.(interface{ IsValid() bool })
	return ok && fastPath.Load() && c.IsValid()
}

// fastPath says whether validation and encoding take the generated fast
// path (IsValid, vtprotobuf) where it gives the same answer.
var fastPath atomic.Bool

func init() { fastPath.Store(true) }

// SetFastPath turns the generated fast path on or off, for the benchmarks
// that measure what it gains (docs/adr/007-event-fast-path.md); answers
// are the same either way. It returns the previous setting.
func SetFastPath(on bool) (was bool) { return fastPath.Swap(on) }

// explain runs protovalidate, the authority, which names the violations.
func explain(what fmt.Stringer, msg proto.Message) error {
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
