package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	lagv1 "github.com/shopbus/shopbus/gen/go/shopbus/lag/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/lag/v1/lagv1connect"
	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
	"github.com/shopbus/shopbus/services/telemetry"
)

// benchIoT drives a running gateway's TelemetryService: --streams client
// streams send batches of --readings readings from --devices devices for
// --duration, each stream closed and another opened every
// --stream-batches batches. It prints the readings accepted per second,
// the rollup consumer's lag every second (from the LagService), how long
// the rollups took to take in every reading (end to end), checks that
// the rollups count each accepted reading once, and re-sends the first
// batches to show them dropped as duplicates with the rollups unchanged.
// It calls with the admin token (a device gateway) of SHOPBUS_ADMIN_TOKEN
// or SHOPBUS_ADMIN_TOKEN_FILE.
func benchIoT(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-iot", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "gateway base URL (env SHOPBUS_URL)")
	devices := fs.Int("devices", 1000, "devices the readings come from (each held to its rate limit)")
	streams := fs.Int("streams", 4, "concurrent IngestReadings client streams")
	readings := fs.Int("readings", telemetry.MaxReadings, "readings per batch (one event), 1 to 500")
	perStream := fs.Int("stream-batches", 200, "batches a stream sends before it is closed and another opened")
	duration := fs.Duration("duration", 20*time.Second, "how long to send")
	resend := fs.Int("resend", 10, "batches sent again at the end, which must all be duplicates")
	rate := fs.Float64("rate", 0, "readings per second to send, on a fixed schedule (0: as fast as the gateway takes them)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *devices < 1:
		return usagef("bench-iot", "--devices %d: need at least 1", *devices)
	case *streams < 1:
		return usagef("bench-iot", "--streams %d: need at least 1", *streams)
	case *readings < 1 || *readings > telemetry.MaxReadings:
		return usagef("bench-iot", "--readings %d: need 1 to %d", *readings, telemetry.MaxReadings)
	case *perStream < 1:
		return usagef("bench-iot", "--stream-batches %d: need at least 1", *perStream)
	case *duration <= 0:
		return usagef("bench-iot", "--duration %v: need more than 0", *duration)
	case *resend < 0:
		return usagef("bench-iot", "--resend %d: need 0 or more", *resend)
	case *rate < 0 || math.IsNaN(*rate) || math.IsInf(*rate, 0):
		return usagef("bench-iot", "--rate %v: need 0 (as fast as possible) or more", *rate)
	}
	if err := checkURL("url", *url); err != nil {
		return usagef("bench-iot", "%w", err)
	}
	opts, err := adminClientOptions()
	if err != nil {
		return err
	}
	// Client streams need HTTP/2: cleartext (h2c) for an http:// URL.
	transport := &http.Transport{ForceAttemptHTTP2: true, MaxIdleConnsPerHost: *streams * 2}
	if strings.HasPrefix(*url, "http://") {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		transport.Protocols = p
	}
	client := &http.Client{Transport: transport}
	b := &iotBench{
		telemetry: telemetryv1connect.NewTelemetryServiceClient(client, *url, append(opts, connect.WithGRPC())...),
		unary:     telemetryv1connect.NewTelemetryServiceClient(http.DefaultClient, *url, opts...),
		lag:       lagv1connect.NewLagServiceClient(http.DefaultClient, *url, opts...),
		devices:   make([]string, *devices),
		seq:       make([]atomic.Uint64, *devices),
		readings:  *readings,
		perStream: *perStream,
		resend:    *resend,
	}
	if *rate > 0 {
		// Each stream sends one batch every interval.
		b.interval = time.Duration(float64(time.Second) * float64(*streams**readings) / *rate)
	}
	for i := range b.devices {
		b.devices[i] = uuid.NewString()
	}
	pace := "as fast as it takes them"
	if *rate > 0 {
		pace = fmt.Sprintf("%.0f readings/s", *rate)
	}
	fmt.Printf("bench-iot: %d streams, %d devices, %d readings per batch, %s, %v, against %s; load average %s\n",
		*streams, *devices, *readings, pace, *duration, *url, loadAverage())
	return b.run(ctx, *streams, *duration)
}

// iotBench is one run of bench-iot.
type iotBench struct {
	telemetry, unary telemetryv1connect.TelemetryServiceClient
	lag              lagv1connect.LagServiceClient
	devices          []string
	seq              []atomic.Uint64 // the last sequence sent, per device
	readings         int
	perStream        int
	resend           int
	interval         time.Duration // between a stream's batches (0: none)

	accepted, duplicates, batches, failed atomic.Uint64
	mu                                    sync.Mutex
	firstErr                              error
	sent                                  []*telemetryv1.ReadingBatch // the first batches, sent again at the end
}

func (b *iotBench) run(ctx context.Context, streams int, duration time.Duration) error {
	start := time.Now()
	stop := start.Add(duration)
	var wg sync.WaitGroup
	for w := range streams {
		wg.Go(func() { b.send(ctx, w, streams, stop) })
	}
	// The consumer's lag, sampled every second while sending and until it
	// is back to 0.
	var lags []string
	sample := func() (uint64, error) {
		lag, err := b.rollupLag(ctx)
		if err == nil {
			lags = append(lags, fmt.Sprintf("%.0fs:%d", time.Since(start).Seconds(), lag))
		}
		return lag, err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(stop) && ctx.Err() == nil {
		select {
		case <-tick.C:
			_, _ = sample()
		case <-ctx.Done():
		}
	}
	wg.Wait()
	sending := time.Since(start)
	accepted := b.accepted.Load()
	fmt.Printf("ingest: %d readings accepted in %d batches over %.1fs: %.0f readings/s (%.0f batches/s); %d duplicates, %d failed calls\n",
		accepted, b.batches.Load(), sending.Seconds(), float64(accepted)/sending.Seconds(), float64(b.batches.Load())/sending.Seconds(),
		b.duplicates.Load(), b.failed.Load())
	if b.firstErr != nil {
		fmt.Printf("ingest: first failure: %v\n", b.firstErr)
	}
	lagAtStop, _ := sample()
	drained, err := b.waitDrained(ctx, sample)
	if err != nil {
		return err
	}
	end := drained.Sub(start)
	fmt.Printf("rollups: lag when sending stopped %d events; all rolled up %.1fs after the start (the lag monitor samples every few seconds): %.0f readings/s end to end\n",
		lagAtStop, end.Seconds(), float64(accepted)/end.Seconds())
	fmt.Printf("rollups: consumer lag (events) over time: %s\n", strings.Join(lags, " "))
	from, to := start.Add(-time.Minute), time.Now().Add(time.Minute)
	counted, err := b.counted(ctx, b.devices, from, to)
	if err != nil {
		return err
	}
	verdict := "each accepted reading counted once"
	if counted != accepted {
		verdict = fmt.Sprintf("MISMATCH: %d accepted", accepted)
	}
	fmt.Printf("rollups: %d readings counted over %d devices: %s\n", counted, len(b.devices), verdict)
	if b.resend == 0 || len(b.sent) == 0 {
		return nil
	}
	res, err := b.unary.IngestBatch(ctx, connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: b.sent}))
	if err != nil {
		return fmt.Errorf("bench-iot: send again: %w", err)
	}
	if _, err := b.waitDrained(ctx, func() (uint64, error) { return b.rollupLag(ctx) }); err != nil {
		return err
	}
	again, err := b.counted(ctx, b.devices, from, to)
	if err != nil {
		return err
	}
	fmt.Printf("duplicates: %d batches sent again: accepted=%d duplicates=%d; rollup counts %d before, %d after\n",
		len(b.sent), res.Msg.GetAccepted(), res.Msg.GetDuplicates(), counted, again)
	if counted != accepted || again != counted || res.Msg.GetAccepted() != 0 {
		return errors.New("bench-iot: the rollups do not count each reading once")
	}
	return nil
}

// send is stream worker w of n: it sends the batches of its devices until
// stop, a stream of perStream batches at a time.
func (b *iotBench) send(ctx context.Context, w, n int, stop time.Time) {
	metrics := []string{"temperature", "humidity", "pressure", "power.watts"}
	readings := make([]*telemetryv1.Reading, b.readings)
	for i := range readings {
		readings[i] = &telemetryv1.Reading{Metric: metrics[i%len(metrics)], Value: float64(i % 100), Unit: "u"}
	}
	next := w
	due := time.Now()
	for time.Now().Before(stop) && ctx.Err() == nil {
		s := b.telemetry.IngestReadings(ctx)
		for range b.perStream {
			if b.interval > 0 {
				due = due.Add(b.interval)
				time.Sleep(time.Until(due))
			}
			d := next % len(b.devices)
			next += n
			rb := &telemetryv1.ReadingBatch{DeviceId: b.devices[d], Sequence: b.seq[d].Add(1), Readings: readings,
				MeasuredAt: timestamppb.New(time.Now().Truncate(time.Second))}
			if err := s.Send(&telemetryv1.IngestReadingsRequest{Batch: rb}); err != nil {
				break // CloseAndReceive says why
			}
			b.keep(rb)
			if !time.Now().Before(stop) {
				break
			}
		}
		res, err := s.CloseAndReceive()
		if err != nil {
			b.fail(err)
			continue
		}
		b.accepted.Add(res.Msg.GetReadings())
		b.batches.Add(res.Msg.GetAccepted())
		b.duplicates.Add(res.Msg.GetDuplicates())
	}
}

// keep keeps rb if it is among the first batches, to send again.
func (b *iotBench) keep(rb *telemetryv1.ReadingBatch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sent) < b.resend {
		b.sent = append(b.sent, rb)
	}
}

// fail counts a failed call, keeping the first error, and backs off a
// little when the server says to slow down.
func (b *iotBench) fail(err error) {
	b.failed.Add(1)
	b.mu.Lock()
	if b.firstErr == nil {
		b.firstErr = err
	}
	b.mu.Unlock()
	if connect.CodeOf(err) == connect.CodeResourceExhausted || connect.CodeOf(err) == connect.CodeUnavailable {
		time.Sleep(100 * time.Millisecond)
	}
}

// rollupLag is the rollup consumer's lag in events, as the gateway's lag
// monitor last sampled it.
func (b *iotBench) rollupLag(ctx context.Context) (uint64, error) {
	res, err := b.lag.ListConsumerLag(ctx, connect.NewRequest(&lagv1.ListConsumerLagRequest{Group: telemetry.RollupConsumer().Durable}))
	if err != nil {
		return 0, fmt.Errorf("bench-iot: consumer lag: %w", err)
	}
	var lag uint64
	for _, c := range res.Msg.GetConsumers() {
		lag += c.GetLag()
	}
	return lag, nil
}

// waitDrained waits (up to 2 minutes) until lag says 0, and returns when.
func (b *iotBench) waitDrained(ctx context.Context, lag func() (uint64, error)) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := lag()
		if err == nil && n == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("bench-iot: the rollups did not catch up in 2 minutes (lag %d, %v)", n, err)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// counted sums the rollups' counts of devices between from and to.
func (b *iotBench) counted(ctx context.Context, devices []string, from, to time.Time) (uint64, error) {
	var total uint64
	for _, d := range devices {
		req := &telemetryv1.GetDeviceStatsRequest{DeviceId: d, StartTime: timestamppb.New(from.Truncate(time.Minute)), EndTime: timestamppb.New(to), PageSize: 1440}
		for {
			res, err := b.unary.GetDeviceStats(ctx, connect.NewRequest(req))
			if err != nil {
				return 0, fmt.Errorf("bench-iot: GetDeviceStats: %w", err)
			}
			for _, r := range res.Msg.GetRollups() {
				total += uint64(r.GetCount())
			}
			if req.PageToken = res.Msg.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
	}
	return total, nil
}

// loadAverage is the machine's load average (/proc/loadavg), or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
