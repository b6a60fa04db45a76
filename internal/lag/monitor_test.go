package lag_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	telemetryv1 "github.com/shopbus/shopbus/gen/go/iot/telemetry/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/lag"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestStatusFollowsTheConsumer drives one consumer through the statuses: its
// handler blocks, so the lag in seconds grows and the consumer is STALL
// within one window of samples; its only instance stops, so it is STOP; a
// new instance handles everything, so it is OK again.
func TestStatusFollowsTheConsumer(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATSWith(t, messaging.StreamOptions{Partitions: 1})
	log := slog.New(slog.DiscardHandler)
	const group, window = "lag-test", 5
	cfg := messaging.ConsumerConfig{
		Stream: "IOT_TELEMETRY", Durable: group, Subjects: []string{"iot.telemetry.raw"},
		Strategy: messaging.KeyBased, Lease: time.Second,
		Retry: messaging.RetryPolicy{MaxDeliver: 100, Base: 10 * time.Millisecond, Cap: 50 * time.Millisecond},
	}
	stuck := make(chan struct{})
	var once sync.Once
	unstick := func() { once.Do(func() { close(stuck) }) }
	t.Cleanup(unstick)
	start := func(h messaging.Handler) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- messaging.Consume(ctx, js, cfg, h, log) }()
		return func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Consume: %v", err)
			}
		}
	}
	stop := start(func(ctx context.Context, _ *messaging.Delivery) error {
		<-stuck
		return errors.New("stopping") // retried later: the event stays unsettled
	})
	for i := range 3 {
		publish(t, js, "5a0c9d0e-1b2c-4d3e-8f40-5a6b7c8d9e0f", uint64(i+1))
	}

	m, err := lag.NewMonitor(js, nil, lag.Options{Interval: time.Millisecond, Window: window, Groups: []string{group}}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sample := func() lag.Consumer {
		m.Sample(ctx)
		cs, _ := m.Consumers()
		if len(cs) != 1 {
			return lag.Consumer{Status: -1}
		}
		return cs[0]
	}
	// Wait for the first event to be in the handler's hands.
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if c := sample(); c.Lag != 3 || c.Partitions[0].Latest.AckPending != 1 {
			return fmt.Errorf("consumer %+v", c)
		}
		return nil
	})
	// From there, STALL within one window of samples, the lag in seconds
	// growing meanwhile.
	var ages []time.Duration
	for i := 0; ; i++ {
		if i > window {
			t.Fatalf("not STALL after %d samples (ages %v)", i, ages)
		}
		time.Sleep(20 * time.Millisecond) // lets the oldest event age between samples
		c := sample()
		ages = append(ages, c.Age)
		if c.Status == lag.STALL {
			break
		}
		if c.Status != lag.OK {
			t.Fatalf("sample %d: %v, want OK until STALL", i, c.Status)
		}
	}
	for i := 1; i < len(ages); i++ {
		if ages[i] <= ages[i-1] || ages[0] <= 0 {
			t.Fatalf("lag in seconds did not grow: %v", ages)
		}
	}
	if err := m.Check(group)(ctx); err != nil {
		t.Errorf("readiness while STALL: %v, want ready (the consumer runs)", err)
	}

	// Its only instance stops: STOP, and readiness fails.
	unstick()
	stop()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if c := sample(); c.Status != lag.STOP {
			return fmt.Errorf("status %v, want STOP", c.Status)
		}
		return nil
	})
	if err := m.Check(group)(ctx); err == nil {
		t.Error("readiness with the consumer STOP: ready")
	}

	// A new instance handles every event: OK.
	stop = start(func(context.Context, *messaging.Delivery) error { return nil })
	defer stop()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if c := sample(); c.Status != lag.OK || c.Lag != 0 || c.Age != 0 {
			return fmt.Errorf("consumer %v lag %d age %v, want OK with no lag", c.Status, c.Lag, c.Age)
		}
		return nil
	})
	if err := m.Check(group)(ctx); err != nil {
		t.Errorf("readiness after recovery: %v", err)
	}
}

// TestUnreadableIsERR: when NATS cannot be read, every consumer is ERR.
func TestUnreadableIsERR(t *testing.T) {
	t.Parallel()
	s, js := testenv.NATSWith(t, messaging.StreamOptions{Partitions: 1})
	log := slog.New(slog.DiscardHandler)
	cfg := messaging.ConsumerConfig{Stream: "IOT_TELEMETRY", Durable: "err-test", Subjects: []string{"iot.telemetry.raw"}, Strategy: messaging.RoundRobin}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = messaging.Consume(ctx, js, cfg, func(context.Context, *messaging.Delivery) error { return nil }, log)
	}()
	const interval = 100 * time.Millisecond
	m, err := lag.NewMonitor(js, nil, lag.Options{Interval: interval, Window: 3}, log)
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		m.Sample(context.Background())
		if cs, _ := m.Consumers(); len(cs) != 1 || cs[0].Status != lag.OK {
			return fmt.Errorf("consumers %+v", cs)
		}
		return nil
	})
	cancel() // before NATS goes, so the instance leaves the group at once
	<-done
	s.Shutdown()
	s.WaitForShutdown()
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	// Samples taken within half an interval of each other count as one
	// (the later replaces the earlier): each read waits for the next
	// interval after the last, as Run's would.
	nextInterval := func() {
		_, at := m.Consumers()
		time.Sleep(time.Until(at.Add(interval)))
	}
	nextInterval()
	m.Sample(sctx) // one failed read is not yet ERR
	if cs, _ := m.Consumers(); len(cs) != 1 || cs[0].Status != lag.STOP && cs[0].Status != lag.OK {
		t.Fatalf("after one failed read: %+v, want the status before it", cs)
	}
	nextInterval()
	m.Sample(sctx)
	if cs, _ := m.Consumers(); len(cs) != 1 || cs[0].Status != lag.ERR {
		t.Fatalf("after two failed reads: %+v, want ERR", cs)
	}
	if err := m.Check("err-test")(context.Background()); err == nil {
		t.Error("readiness with the consumer ERR: ready")
	}
}

// TestUnreadableAtStartIsERR: a group whose first read fails, before the
// monitor knows its partitions, is ERR, and readiness says so.
func TestUnreadableAtStartIsERR(t *testing.T) {
	t.Parallel()
	s, js := testenv.NATSWith(t, messaging.StreamOptions{Partitions: 1})
	m, err := lag.NewMonitor(js, nil, lag.Options{Interval: 100 * time.Millisecond, Window: 3, Groups: []string{"never-read"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m.Sample(ctx)
	if cs, _ := m.Consumers(); len(cs) != 1 || cs[0].Group != "never-read" || cs[0].Status != lag.ERR {
		t.Fatalf("after a failed first read: %+v, want never-read ERR", cs)
	}
	if err := m.Check("never-read")(context.Background()); err == nil {
		t.Error("readiness with the group unread: ready")
	}
}

// publish publishes one telemetry.raw event of device, its seq-th.
func publish(t *testing.T, js jetstream.JetStream, device string, seq uint64) {
	t.Helper()
	env, err := event.New(context.Background(), &telemetryv1.TelemetryRaw{
		DeviceId: device, Sequence: seq, MeasuredAt: timestamppb.Now(),
		Readings: []*telemetryv1.Reading{{Metric: "temperature", Value: 20, Unit: "Cel"}},
	}, event.WithSource("shopbus/telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: "iot.telemetry.raw.v1." + device, Data: b, Header: event.Headers(env)}); err != nil {
		t.Fatal(err)
	}
}
