package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shopbus/shopbus/gateway"
	telemetryeventsv1 "github.com/shopbus/shopbus/gen/go/iot/telemetry/v1"
	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/telemetry"
)

// stream is the stream the service publishes to.
var stream = messaging.StreamName("iot", "telemetry")

// env is a telemetry service behind a real gateway (authentication, the
// admin rule, request validation) on the embedded nats-server and a fresh
// PostgreSQL schema.
type env struct {
	svc   *telemetry.Service
	js    jetstream.JetStream
	pool  *pgxpool.Pool
	url   string
	token func(p auth.Principal) string
}

// h2c speaks cleartext HTTP/2, which a client stream needs.
var h2c = func() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}()

// start starts the service with limits, its consumer running unless
// noConsumer, and its gateway, whose server each of server changes.
func start(t *testing.T, limits telemetry.Limits, noConsumer bool, server ...func(*http.Server)) *env {
	t.Helper()
	rt := testenv.Runtime(t, "telemetry")
	pool, js := rt.Pool, rt.JS
	svc := telemetry.New(rt)
	if err := svc.SetLimits(limits); err != nil {
		t.Fatal(err)
	}
	if !noConsumer {
		testenv.Run(t, svc)
	}
	signer, err := auth.KeyPair(t.TempDir(), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signer.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	a := auth.Config{Verifier: verifier}
	path, h := telemetryv1connect.NewTelemetryServiceHandler(telemetry.NewHandler(svc), gateway.HandlerOptions(a, nil)...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gateway.NewServer(l.Addr().String(), gateway.Handler(gateway.Config{Auth: a,
		Services: []gateway.Service{{Name: telemetryv1connect.TelemetryServiceName, Path: path, Handler: h}}}))
	for _, f := range server {
		f(srv)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &env{svc: svc, js: js, pool: pool, url: "http://" + l.Addr().String(), token: func(p auth.Principal) string {
		tok, err := signer.Token(p, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}}
}

// client calls as p: over gRPC on HTTP/2 (client streams need it), or
// Connect on HTTP/1.1.
func (e *env) client(p auth.Principal, grpc bool) telemetryv1connect.TelemetryServiceClient {
	opts := []connect.ClientOption{connect.WithInterceptors(gateway.BearerToken(e.token(p)))}
	if grpc {
		return telemetryv1connect.NewTelemetryServiceClient(h2c, e.url, append(opts, connect.WithGRPC())...)
	}
	return telemetryv1connect.NewTelemetryServiceClient(http.DefaultClient, e.url, opts...)
}

// admin is an operator (or a device gateway).
var admin = auth.Principal{Subject: "ops", Admin: true}

// device is a device's own token ("kind": "device").
func device(id string) auth.Principal { return auth.Principal{Subject: id, Kind: auth.Device} }

// stored is how many events the stream holds.
func (e *env) stored(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// settled waits until the rollup consumer has acknowledged every event the
// stream holds.
func (e *env) settled(t *testing.T) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		c, err := e.js.Consumer(context.Background(), stream, telemetry.RollupConsumer().Durable)
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 || info.AckFloor.Stream < e.stored(t) {
			return fmt.Errorf("rollup consumer: %d pending, %d unacked, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
		}
		return nil
	})
}

// batch is a batch of device at measured with (metric, value) readings,
// in "u".
func batch(device string, seq uint64, measured time.Time, readings ...any) *telemetryv1.ReadingBatch {
	b := &telemetryv1.ReadingBatch{DeviceId: device, Sequence: seq, MeasuredAt: timestamppb.New(measured), FirmwareVersion: "2.4.1"}
	for i := 0; i < len(readings); i += 2 {
		b.Readings = append(b.Readings, &telemetryv1.Reading{Metric: readings[i].(string), Value: readings[i+1].(float64), Unit: "u"})
	}
	return b
}

// rollup is what a test expects of one row: "minute metric count min max mean".
func rollupString(r *telemetryv1.Rollup) string {
	return fmt.Sprintf("%s %s %d %g %g %g", r.GetMinute().AsTime().Format("15:04"), r.GetMetric(), r.GetCount(), r.GetMin(), r.GetMax(), r.GetMean())
}

// stats is the device's rollups in the hour from t0, as rollupStrings.
func (e *env) stats(ctx context.Context, device string, t0 time.Time, pageSize uint32) ([]string, error) {
	var out []string
	req := &telemetryv1.GetDeviceStatsRequest{DeviceId: device, StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0.Add(time.Hour)), PageSize: pageSize}
	for {
		res, err := e.client(admin, false).GetDeviceStats(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		for _, r := range res.Msg.GetRollups() {
			out = append(out, rollupString(r))
		}
		if res.Msg.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = res.Msg.GetNextPageToken()
	}
}

// waitStats waits until the device's rollups are want.
func (e *env) waitStats(t *testing.T, device string, t0 time.Time, want []string) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		got, err := e.stats(context.Background(), device, t0, 2)
		if err != nil {
			return err
		}
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			return fmt.Errorf("rollups\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		return nil
	})
}

// t0 is 10:00 UTC of a recent day (14 to 38 hours ago): batches are taken
// for MaxBatchAge after they are measured.
var t0 = time.Now().UTC().Truncate(24 * time.Hour).Add(-14 * time.Hour)

// TestIngestAndRollUp: batches sent on a client stream (a device's own
// token, gRPC) and in a unary call (a device gateway's admin token,
// Connect over HTTP/1.1) are published and rolled up per minute, metric
// and unit: count, min, max and mean as computed by hand here, read a page
// at a time. A batch sent again (same device and sequence) is dropped by
// JetStream: accepted 0, duplicates 1, nothing stored, rollups unchanged.
// A device's token may not send another device's readings nor read the
// rollups, and a user's token may not ingest as the device of its own id.
func TestIngestAndRollUp(t *testing.T) {
	t.Parallel()
	e := start(t, telemetry.Limits{}, false)
	ctx := context.Background()
	a, b := uuid.NewString(), uuid.NewString()

	s := e.client(device(a), true).IngestReadings(ctx)
	for _, rb := range []*telemetryv1.ReadingBatch{
		batch(a, 1, t0.Add(5*time.Second), "temperature", 20.0, "temperature", 22.0, "humidity", 50.0),
		batch(a, 2, t0.Add(40*time.Second), "temperature", 18.0),
		batch(a, 3, t0.Add(70*time.Second), "temperature", 30.0, "humidity", 40.0, "humidity", 44.0),
	} {
		if err := s.Send(&telemetryv1.IngestReadingsRequest{Batch: rb}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.CloseAndReceive()
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Msg; m.GetAccepted() != 3 || m.GetDuplicates() != 0 || m.GetReadings() != 7 {
		t.Errorf("stream: %v, want 3 accepted, 0 duplicates, 7 readings", m)
	}
	bres, err := e.client(admin, false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{
		batch(b, 7, t0.Add(59*time.Second), "power.watts", -1.5, "power.watts", 2.5),
		batch(a, 4, t0.Add(119*time.Second), "temperature", 26.0),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	if m := bres.Msg; m.GetAccepted() != 2 || m.GetDuplicates() != 0 || m.GetReadings() != 3 {
		t.Errorf("batch: %v, want 2 accepted, 0 duplicates, 3 readings", m)
	}
	// By hand: 10:00 temperature 20, 22, 18; humidity 50; 10:01
	// temperature 30, 26; humidity 40, 44. Device b: 10:00 power -1.5, 2.5.
	wantA := []string{"10:00 humidity 1 50 50 50", "10:00 temperature 3 18 22 20", "10:01 humidity 2 40 44 42", "10:01 temperature 2 26 30 28"}
	e.waitStats(t, a, t0, wantA)
	e.waitStats(t, b, t0, []string{"10:00 power.watts 2 -1.5 2.5 0.5"})

	// Sent again: the stream's duplicate window drops it.
	stored := e.stored(t)
	again, err := e.client(device(a), false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{
		batch(a, 2, t0.Add(40*time.Second), "temperature", 18.0),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	if m := again.Msg; m.GetAccepted() != 0 || m.GetDuplicates() != 1 || m.GetReadings() != 0 {
		t.Errorf("a batch sent again: %v, want 0 accepted, 1 duplicate", m)
	}
	if n := e.stored(t); n != stored {
		t.Errorf("the stream holds %d events after a duplicate, want %d", n, stored)
	}
	e.settled(t)
	e.waitStats(t, a, t0, wantA)

	// A device sends its own readings only, and does not read rollups.
	_, err = e.client(device(a), false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{
		batch(b, 8, t0, "temperature", 1.0),
	}}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("device a sending for b: %v, want PermissionDenied", err)
	}
	_, err = e.client(device(a), false).GetDeviceStats(ctx, connect.NewRequest(&telemetryv1.GetDeviceStatsRequest{
		DeviceId: a, StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0.Add(time.Hour))}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a device reading rollups: %v, want PermissionDenied", err)
	}
	// A user's token (no "kind" claim) is no device's, even naming its own
	// id as the device, in a unary call or on the stream.
	user := auth.Principal{Subject: a}
	_, err = e.client(user, false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{
		batch(a, 9, t0, "temperature", 1.0),
	}}))
	if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "a user's token cannot ingest as a device") {
		t.Errorf("a user's token ingesting as the device of its id: %v, want PermissionDenied naming the reason", err)
	}
	us := e.client(user, true).IngestReadings(ctx)
	_ = us.Send(&telemetryv1.IngestReadingsRequest{Batch: batch(a, 9, t0, "temperature", 1.0)})
	if _, err := us.CloseAndReceive(); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a user's token streaming as the device of its id: %v, want PermissionDenied", err)
	}
	if n := e.stored(t); n != stored {
		t.Errorf("the stream holds %d events, want %d: refused batches were published", n, stored)
	}
}

// TestRedelivery: an event delivered again has one effect, whether it is
// redelivered after a crash between commit and ack (the handler called
// again with the same batch, and twice in one batch), or published again
// under another Nats-Msg-Id, past the duplicate window.
func TestRedelivery(t *testing.T) {
	t.Parallel()
	e := start(t, telemetry.Limits{}, false)
	ctx := context.Background()
	dev := uuid.NewString()
	raw := &telemetryeventsv1.TelemetryRaw{DeviceId: dev, Sequence: 1, MeasuredAt: timestamppb.New(t0),
		Readings: []*telemetryeventsv1.Reading{{Metric: "temperature", Value: 3, Unit: "u"}, {Metric: "temperature", Value: 5, Unit: "u"}}}
	ev, err := event.New(ctx, raw, event.WithSource("shopbus/telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	ev.Id = telemetry.BatchID(dev, 1)
	d := &messaging.Delivery{Envelope: ev, Event: raw}
	for range 2 { // the second call is a redelivery after a lost ack
		if err := e.svc.RollUpReadings(ctx, []*messaging.Delivery{d, d}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"10:00 temperature 2 3 5 4"}
	e.waitStats(t, dev, t0, want)

	// The same event on the stream, under another Nats-Msg-Id.
	data, err := event.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := event.SpecOf(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"copy-1", "copy-2"} {
		if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: spec.SubjectFor(dev), Data: data, Header: event.Headers(ev)}, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	e.settled(t)
	e.waitStats(t, dev, t0, want)
	if n := testenv.Scalar(t, e.pool, `SELECT count(*) FROM processed_events`); n != 1 {
		t.Errorf("%d processed events, want 1", n)
	}
}

// TestBadInput: a bad batch is InvalidArgument naming the field, on a
// unary call and on a stream, and nothing of the call is published: a
// unary call is checked whole before any batch is.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := start(t, telemetry.Limits{}, true)
	ctx := context.Background()
	dev := uuid.NewString()
	good := batch(dev, 1, t0, "temperature", 1.0)
	tooMany := batch(dev, 2, t0)
	for range 501 {
		tooMany.Readings = append(tooMany.Readings, &telemetryv1.Reading{Metric: "m", Value: 1, Unit: "u"})
	}
	for _, tc := range []struct {
		name  string
		batch *telemetryv1.ReadingBatch
		field string // the violation's field path ends with it
	}{
		{"bad device id", batch("not-a-uuid", 1, t0, "temperature", 1.0), "device_id"},
		{"no readings", batch(dev, 1, t0), "readings"},
		{"too many readings", tooMany, "readings"},
		{"NaN", batch(dev, 1, t0, "temperature", math.NaN()), "value"},
		{"infinity", batch(dev, 1, t0, "temperature", math.Inf(1)), "value"},
		{"beyond 1e15 (a sum could overflow)", batch(dev, 1, t0, "temperature", 1.7e308), "value"},
		{"bad metric name", batch(dev, 1, t0, "Temperature (C)", 1.0), "metric"},
		{"no measured_at", &telemetryv1.ReadingBatch{DeviceId: dev, Readings: good.GetReadings()}, "measured_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.client(admin, false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{
				Batches: []*telemetryv1.ReadingBatch{good, tc.batch}}))
			checkViolation(t, err, "batches[1]", tc.field)

			s := e.client(admin, true).IngestReadings(ctx)
			_ = s.Send(&telemetryv1.IngestReadingsRequest{Batch: tc.batch})
			_, err = s.CloseAndReceive()
			checkViolation(t, err, "batch", tc.field)
		})
	}
	// A time the service refuses: a batch too old for the duplicate check
	// (sent again, it would be counted twice), too far ahead, or no
	// timestamp at all (the binary format carries seconds past year 9999).
	past9999 := batch(dev, 3, t0, "temperature", 1.0)
	past9999.MeasuredAt = &timestamppb.Timestamp{Seconds: 1e13}
	for name, b := range map[string]*telemetryv1.ReadingBatch{
		"more than 168h0m0s ago": batch(dev, 3, time.Now().Add(-telemetry.MaxBatchAge-time.Minute), "temperature", 1.0),
		"ahead of the server's":  batch(dev, 3, time.Now().Add(telemetry.MaxClockSkew+time.Minute), "temperature", 1.0),
		"after 9999-12-31":       past9999,
	} {
		_, err := e.client(admin, false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{
			Batches: []*telemetryv1.ReadingBatch{good, b}}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "batches[1]: invalid request: measured_at") ||
			!strings.Contains(err.Error(), name) {
			t.Errorf("IngestBatch, measured_at %v: %v, want invalid_argument saying %q", b.GetMeasuredAt(), err, name)
		}
		st := e.client(admin, true).IngestReadings(ctx)
		_ = st.Send(&telemetryv1.IngestReadingsRequest{Batch: b})
		if _, err = st.CloseAndReceive(); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), name) {
			t.Errorf("IngestReadings, measured_at %v: %v, want invalid_argument saying %q", b.GetMeasuredAt(), err, name)
		}
	}
	_, err := e.client(admin, false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{}))
	checkViolation(t, err, "batches", "batches")
	_, err = e.client(admin, false).GetDeviceStats(ctx, connect.NewRequest(&telemetryv1.GetDeviceStatsRequest{
		DeviceId: dev, StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0.Add(25 * time.Hour))}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "24 hours") {
		t.Errorf("a range of 25 hours: %v, want InvalidArgument", err)
	}
	_, err = e.client(admin, false).GetDeviceStats(ctx, connect.NewRequest(&telemetryv1.GetDeviceStatsRequest{
		DeviceId: dev, StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0.Add(time.Hour)), PageToken: "garbage!"}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "page_token") {
		t.Errorf("a bad page token: %v, want InvalidArgument naming page_token", err)
	}
	if n := e.stored(t); n != 0 {
		t.Errorf("the stream holds %d events, want none", n)
	}
}

// checkViolation fails unless err is InvalidArgument with a field
// violation whose path starts with prefix and ends with field, as in
// "batches[1].readings[0].value".
func checkViolation(t *testing.T, err error, prefix, field string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		t.Fatalf("%v, want InvalidArgument", err)
	}
	var paths []string
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatal(err)
		}
		if vs, ok := v.(*validate.Violations); ok {
			for _, v := range vs.GetViolations() {
				path := protovalidate.FieldPathString(v.GetField())
				if strings.HasPrefix(path, prefix) && strings.HasSuffix(path, field) {
					return
				}
				paths = append(paths, path)
			}
		}
	}
	t.Errorf("%v: violations of %v, want %s…%s", err, paths, prefix, field)
}

// TestTooFast: a device over its rate gets ResourceExhausted with a
// RetryInfo, and nothing of the refused call is published; other devices
// are not held back. Past MaxDevices active devices, a new one waits.
// With one publish in flight per call, a stream still gets through.
func TestTooFast(t *testing.T) {
	t.Parallel()
	e := start(t, telemetry.Limits{ReadingsPerSecond: 0.001, Burst: 500, MaxDevices: 2, InFlight: 1}, true)
	ctx := context.Background()
	fast, other, third := uuid.NewString(), uuid.NewString(), uuid.NewString()
	full := func(dev string, seq uint64) *telemetryv1.ReadingBatch {
		b := batch(dev, seq, t0)
		for i := range 250 {
			b.Readings = append(b.Readings, &telemetryv1.Reading{Metric: "m", Value: float64(i), Unit: "u"})
		}
		return b
	}
	s := e.client(device(fast), true).IngestReadings(ctx)
	for seq := range uint64(2) {
		if err := s.Send(&telemetryv1.IngestReadingsRequest{Batch: full(fast, seq)}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.CloseAndReceive()
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.GetAccepted() != 2 {
		t.Errorf("%v, want 2 accepted", res.Msg)
	}
	stored := e.stored(t)
	_, err = e.client(device(fast), false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{batch(fast, 3, t0, "m", 1.0)}}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		t.Fatalf("over the rate: %v, want ResourceExhausted", err)
	}
	retry := false
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			_, retry = v.(*errdetails.RetryInfo)
		}
	}
	if !retry || ce.Meta().Get("Retry-After") == "" {
		t.Errorf("ResourceExhausted without RetryInfo or Retry-After: %v", ce)
	}
	// Another device is not held back, and one call is all or nothing.
	_, err = e.client(admin, false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{
		batch(other, 1, t0, "m", 1.0), batch(fast, 4, t0, "m", 1.0)}}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("a call with a device over its rate: %v, want ResourceExhausted", err)
	}
	if _, err := e.client(device(other), false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{
		batch(other, 1, t0, "m", 1.0)}})); err != nil {
		t.Errorf("another device: %v", err)
	}
	// Two devices tracked, both active: a third waits.
	_, err = e.client(device(third), false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{
		batch(third, 1, t0, "m", 1.0)}}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("a third device past MaxDevices: %v, want ResourceExhausted", err)
	}
	if n := e.stored(t); n != stored+1 {
		t.Errorf("the stream holds %d events, want %d", n, stored+1)
	}
}

// TestBacklogSaysWhichBatch: when JetStream does not take a batch (here
// its stream is gone), the client gets Unavailable naming the batch to
// send again, and none of NATS's own error text.
func TestBacklogSaysWhichBatch(t *testing.T) {
	t.Parallel()
	e := start(t, telemetry.Limits{}, true)
	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, messaging.StreamName("iot", "telemetry")); err != nil {
		t.Fatal(err)
	}
	dev := uuid.NewString()
	_, err := e.client(device(dev), false).IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{
		Batches: []*telemetryv1.ReadingBatch{batch(dev, 7, t0, "m", 1.0)}}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable {
		t.Fatalf("stream gone: %v, want Unavailable", err)
	}
	msg := ce.Message()
	if !strings.Contains(msg, "sequence 7") || !strings.Contains(msg, dev) {
		t.Errorf("message %q does not name the batch (device %s, sequence 7)", msg, dev)
	}
	if strings.Contains(strings.ToLower(msg), "nats") || strings.Contains(msg, "responders") {
		t.Errorf("message %q carries NATS's error text", msg)
	}
}

// TestLongStream: a device's stream of readings may outlast the server's
// ReadTimeout, which bounds the other requests' bodies: here a stream
// sends its second batch after two ReadTimeouts and both are accepted.
func TestLongStream(t *testing.T) {
	t.Parallel()
	const readTimeout = 300 * time.Millisecond
	e := start(t, telemetry.Limits{}, true, func(s *http.Server) { s.ReadTimeout = readTimeout })
	dev := uuid.NewString()
	s := e.client(device(dev), true).IngestReadings(context.Background())
	if err := s.Send(&telemetryv1.IngestReadingsRequest{Batch: batch(dev, 1, t0, "m", 1.0)}); err != nil {
		t.Fatal(err)
	}
	// A device between two batches: nothing to wait on but the time the
	// server's ReadTimeout would have cut the stream at.
	time.Sleep(2 * readTimeout)
	if err := s.Send(&telemetryv1.IngestReadingsRequest{Batch: batch(dev, 2, t0, "m", 2.0)}); err != nil {
		t.Fatal(err)
	}
	res, err := s.CloseAndReceive()
	if err != nil {
		t.Fatalf("a stream longer than ReadTimeout: %v", err)
	}
	if res.Msg.GetAccepted() != 2 {
		t.Errorf("%v, want 2 accepted", res.Msg)
	}
}
