package event_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	orderv1 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	ordereventsv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	telemetryv1 "github.com/shopbus/shopbus/gen/go/iot/telemetry/v1"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func orderCreated() *orderv1.OrderCreated {
	return &orderv1.OrderCreated{
		OrderId:    "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
		Items: []*orderv1.LineItem{
			{Sku: "MUG-001", Quantity: 2, UnitPriceMinor: 1250},
			{Sku: "TEE-BLK-M", Quantity: 1, UnitPriceMinor: 2499},
		},
		Currency:   "EUR",
		TotalMinor: 4999,
		CreatedAt:  timestamppb.New(time.Date(2026, 11, 27, 10, 15, 0, 0, time.UTC)),
	}
}

func TestNewRoundTrip(t *testing.T) {
	ctx := context.Background()
	msg := orderCreated()
	env, err := event.New(ctx, msg, event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	if env.GetType() != "order.created" || env.GetVersion() != 1 {
		t.Errorf("type, version = %q, %d; want order.created, 1", env.GetType(), env.GetVersion())
	}
	if env.GetCorrelationId() != env.GetId() || env.GetCausationId() != "" {
		t.Errorf("first event of a flow: correlation %q causation %q, want its own id and empty", env.GetCorrelationId(), env.GetCausationId())
	}
	if v := env.GetId()[14]; v != '7' {
		t.Errorf("id %s is not a UUIDv7", env.GetId())
	}
	if _, off := env.GetTs().AsTime().Zone(); off != 0 {
		t.Errorf("ts %v is not UTC", env.GetTs().AsTime())
	}

	b, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := event.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(decoded, env) {
		t.Fatalf("decoded envelope differs:\n got %v\nwant %v", decoded, env)
	}
	payload, spec, err := event.Open(decoded)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Subject() != "ecommerce.order.created.v1" {
		t.Errorf("subject = %q", spec.Subject())
	}
	if !proto.Equal(payload, msg) {
		t.Errorf("payload differs:\n got %v\nwant %v", payload, msg)
	}
}

func TestNewTraceAndCause(t *testing.T) {
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	cause, err := event.New(ctx, orderCreated(), event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	if got := event.Traceparent(cause); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent = %q, want the context's span", got)
	}

	// An event caused by another, produced without a span in its context,
	// joins the cause's flow and trace.
	effect, err := event.New(context.Background(), &inventoryv1.InventoryRejected{
		OrderId:    "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		Reason:     inventoryv1.RejectionReason_REJECTION_REASON_OUT_OF_STOCK,
		Shortages:  []*inventoryv1.Shortage{{Sku: "MUG-001", Requested: 3, Available: 1}},
		RejectedAt: timestamppb.Now(),
	}, event.WithSource("shopbus/inventory"), event.WithCause(cause))
	if err != nil {
		t.Fatal(err)
	}
	if effect.GetCorrelationId() != cause.GetCorrelationId() || effect.GetCausationId() != cause.GetId() {
		t.Errorf("correlation, causation = %q, %q; want %q, %q", effect.GetCorrelationId(), effect.GetCausationId(), cause.GetCorrelationId(), cause.GetId())
	}
	if !bytes.Equal(effect.GetTraceId(), cause.GetTraceId()) {
		t.Errorf("trace id = %q, want the cause's %q", effect.GetTraceId(), cause.GetTraceId())
	}
	// A consumer continues the trace through its context.
	sc := trace.SpanContextFromContext(event.ContextWithTrace(context.Background(), effect))
	if sc.TraceID().String() != hex.EncodeToString(cause.GetTraceId()) || !sc.IsRemote() {
		t.Errorf("ContextWithTrace: %v", sc)
	}
}

func TestHeaders(t *testing.T) {
	env, err := event.New(context.Background(), orderCreated(), event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	h := event.Headers(env)
	for name, want := range map[string]string{
		"Nats-Msg-Id":            env.GetId(),
		"traceparent":            "00-" + hex.EncodeToString(env.GetTraceId()) + "-" + hex.EncodeToString(env.GetSpanId()) + "-01",
		"Shopbus-Type":           "order.created",
		"Shopbus-Version":        "1",
		"Shopbus-Source":         "shopbus/order",
		"Shopbus-Correlation-Id": env.GetId(),
		"Shopbus-Partition-Key":  "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if err := event.CheckHeaders(h, env); err != nil {
		t.Errorf("CheckHeaders on its own headers: %v", err)
	}
	h.Set(event.HeaderType, "inventory.adjusted")
	if err := event.CheckHeaders(h, env); !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "Shopbus-Type") {
		t.Errorf("CheckHeaders with a lying type header: %v, want ErrInvalid naming Shopbus-Type", err)
	}
}

// TestMalformed: bad input gets an error that says what is wrong, and
// nothing panics.
func TestMalformed(t *testing.T) {
	ctx := context.Background()
	good, err := event.New(ctx, orderCreated(), event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	goodBytes, err := event.Encode(good)
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(*eventv1.Envelope)) []byte {
		env := proto.Clone(good).(*eventv1.Envelope)
		f(env)
		b, err := proto.Marshal(env) // not event.Encode: that would refuse it
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		bytes   []byte
		wantErr error
		mention string // the error names what is wrong
	}{
		{"empty", nil, event.ErrMalformed, "empty"},
		{"truncated", goodBytes[:len(goodBytes)-7], event.ErrMalformed, "envelope"},
		{"not protobuf", []byte("{\"id\":\"json, not protobuf\"}"), event.ErrMalformed, "envelope"},
		{"missing id", mutate(func(e *eventv1.Envelope) { e.Id = "" }), event.ErrInvalid, "id"},
		{"missing ts", mutate(func(e *eventv1.Envelope) { e.Ts = nil }), event.ErrInvalid, "ts"},
		{"bad trace id", mutate(func(e *eventv1.Envelope) { e.TraceId = []byte("xyz") }), event.ErrInvalid, "trace_id"},
		{"wrong type", mutate(func(e *eventv1.Envelope) { e.Type = "order.exploded" }), event.ErrUnknownType, `"order.exploded"`},
		{"unknown version", mutate(func(e *eventv1.Envelope) { e.Version = 9 }), event.ErrUnknownType, "version 9"},
		{"payload of another type", mutate(func(e *eventv1.Envelope) { e.Type = "message.sent" }), event.ErrMalformed, "message.sent.v1 payload"},
		{"truncated payload", mutate(func(e *eventv1.Envelope) { e.Payload = e.Payload[:len(e.Payload)-3] }), event.ErrMalformed, "order.created.v1 payload"},
		{"payload missing required field", mutate(func(e *eventv1.Envelope) {
			msg := orderCreated()
			msg.CreatedAt = nil
			e.Payload, _ = proto.Marshal(msg)
		}), event.ErrInvalid, "created_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := event.Decode(tc.bytes)
			if err == nil {
				_, _, err = event.Open(env)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

// TestPeek: Peek parses what Decode would refuse as invalid (a relay's rows
// were validated when they were made), and refuses what is not an envelope.
func TestPeek(t *testing.T) {
	good, err := event.New(context.Background(), orderCreated(), event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	invalid := proto.Clone(good).(*eventv1.Envelope)
	invalid.Id = "not a uuid"
	b, err := proto.Marshal(invalid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.Decode(b); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("Decode of an envelope with a bad id: %v, want ErrInvalid", err)
	}
	env, err := event.Peek(b)
	if err != nil || env.GetId() != "not a uuid" || env.GetPartitionKey() != good.GetPartitionKey() {
		t.Fatalf("Peek = %v, %v; want the envelope as it is", env, err)
	}
	for _, bad := range [][]byte{nil, {0x00, 0x01}, make([]byte, 2<<20)} {
		if _, err := event.Peek(bad); !errors.Is(err, event.ErrMalformed) {
			t.Errorf("Peek of %d bytes: %v, want ErrMalformed", len(bad), err)
		}
	}
}

func TestNewRejectsInvalidEvent(t *testing.T) {
	msg := orderCreated()
	msg.Items[1].Quantity = 0
	_, err := event.New(context.Background(), msg, event.WithSource("shopbus/order"))
	if !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "items[1].quantity") {
		t.Errorf("New with quantity 0: %v, want ErrInvalid naming items[1].quantity", err)
	}
	if _, err := event.New(context.Background(), orderCreated()); !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "source") {
		t.Errorf("New without a source: %v, want ErrInvalid naming source", err)
	}
	// No text may hold a NUL, at any depth: PostgreSQL's text cannot.
	raw := &telemetryv1.TelemetryRaw{DeviceId: "0193a5e2-7c1d-7b3e-9f4a-000000000001", Sequence: 1, MeasuredAt: timestamppb.Now(),
		Readings: []*telemetryv1.Reading{{Metric: "temperature", Value: 20, Unit: "Cel"}, {Metric: "humidity", Value: 40, Unit: "%\x00"}}}
	if _, err := event.New(context.Background(), raw, event.WithSource("shopbus/telemetry")); !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "readings[1].unit holds a NUL") {
		t.Errorf("New with a NUL in readings[1].unit: %v, want ErrInvalid naming it", err)
	}
	if _, err := event.New(context.Background(), &eventv1.EventOptions{Name: "x"}, event.WithSource("t")); !errors.Is(err, event.ErrNotEvent) {
		t.Errorf("New with a message that is not an event: %v, want ErrNotEvent", err)
	}
}

// TestGoldenOrderCreatedV1 decodes an order.created.v1 envelope written by
// the first version of the contract: every later version must still read it.
func TestGoldenOrderCreatedV1(t *testing.T) {
	const path = "testdata/order.created.v1.first.bin"
	if *update {
		env, err := event.New(context.Background(), orderCreated(), event.WithSource("shopbus/order"),
			event.WithClock(func() time.Time { return time.Date(2026, 11, 27, 10, 15, 0, 0, time.UTC) }))
		if err != nil {
			t.Fatal(err)
		}
		b, err := event.Encode(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := event.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	msg, _, err := event.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(msg, orderCreated()) {
		t.Errorf("golden v1 payload = %v, want %v", msg, orderCreated())
	}
}

// TestCheckSource: an event whose contract declares its producer is refused
// from any other source; one that declares none is accepted from anyone.
func TestCheckSource(t *testing.T) {
	t.Parallel()
	order := &ordereventsv2.OrderCreated{
		OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", Customer: &ordereventsv2.Customer{CustomerId: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
		Lines:     []*ordereventsv2.OrderLine{{Sku: "MUG-001", Quantity: 1, UnitPrice: &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1}}},
		Total:     &ordereventsv2.Money{Currency: "EUR", AmountMinor: 1},
		CreatedAt: timestamppb.Now(),
	}
	reading := &telemetryv1.TelemetryRaw{DeviceId: "0193a5e2-7c1d-7b3e-9f4a-000000000001", Sequence: 1, MeasuredAt: timestamppb.Now(),
		Readings: []*telemetryv1.Reading{{Metric: "temperature", Value: 20, Unit: "Cel"}}}
	for _, tc := range []struct {
		msg    proto.Message
		source string
		ok     bool
	}{
		{order, "shopbus/order", true},
		{order, "shopbus/inventory", false},
		{order, "attacker", false},
		{reading, "shopbus/telemetry", true},
		{reading, "anyone", false},
	} {
		env, err := event.New(context.Background(), tc.msg, event.WithSource(tc.source))
		if err != nil {
			t.Fatal(err)
		}
		err = event.CheckSource(env)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, event.ErrWrongSource)) {
			t.Errorf("%T from %q: %v, want ok %v", tc.msg, tc.source, err, tc.ok)
		}
	}
}
