package event

import (
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
)

// NATS headers that mirror an envelope, so operators can route and filter
// without decoding. Nats-Msg-Id makes JetStream drop a re-publish of the same
// event inside the stream's duplicate window.
const (
	HeaderMsgID         = nats.MsgIdHdr // "Nats-Msg-Id": the envelope id
	HeaderTraceparent   = "traceparent" // W3C trace context
	HeaderType          = "Shopbus-Type"
	HeaderVersion       = "Shopbus-Version"
	HeaderSource        = "Shopbus-Source"
	HeaderCorrelationID = "Shopbus-Correlation-Id"
	HeaderPartitionKey  = "Shopbus-Partition-Key"
)

// Headers returns the NATS headers that mirror env.
func Headers(env *eventv1.Envelope) nats.Header {
	h := nats.Header{}
	h.Set(HeaderMsgID, env.GetId())
	h.Set(HeaderTraceparent, Traceparent(env))
	h.Set(HeaderType, env.GetType())
	h.Set(HeaderVersion, strconv.FormatUint(uint64(env.GetVersion()), 10))
	h.Set(HeaderSource, env.GetSource())
	h.Set(HeaderCorrelationID, env.GetCorrelationId())
	h.Set(HeaderPartitionKey, env.GetPartitionKey())
	return h
}

// Traceparent returns env's trace as a W3C traceparent header value.
func Traceparent(env *eventv1.Envelope) string {
	return "00-" + hex.EncodeToString(env.GetTraceId()) + "-" + hex.EncodeToString(env.GetSpanId()) + "-01"
}

// CheckHeaders reports an error wrapping ErrInvalid when headers that mirror
// env disagree with it: a message whose headers lie is not trusted.
func CheckHeaders(h nats.Header, env *eventv1.Envelope) error {
	want := Headers(env)
	for _, name := range []string{HeaderType, HeaderVersion, HeaderPartitionKey} {
		if got := h.Get(name); got != "" && got != want.Get(name) {
			return fmt.Errorf("%w: header %s is %q but the envelope says %q", ErrInvalid, name, got, want.Get(name))
		}
	}
	return nil
}

// CheckSource returns an error wrapping ErrWrongSource when env's event
// declares its producer (Spec.Producer) and env.Source names another
// service: a consumer never handles an event its owner did not publish.
// An event whose type is unknown is left to Open and Latest to refuse.
func CheckSource(env *eventv1.Envelope) error {
	spec, err := Lookup(env.GetType(), env.GetVersion())
	if err != nil || spec.Producer == "" || env.GetSource() == spec.Producer {
		return nil
	}
	return fmt.Errorf("%w: %s from %q, but its producer is %q", ErrWrongSource, spec, env.GetSource(), spec.Producer)
}
