package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	telemetryeventsv1 "github.com/shopbus/shopbus/gen/go/iot/telemetry/v1"
	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// Ingested counts what JetStream did with the batches of a call.
type Ingested struct {
	// Accepted is how many batches it stored.
	Accepted uint64
	// Duplicates is how many it dropped as sent before: the same (device,
	// sequence) within the stream's duplicate window.
	Duplicates uint64
	// Readings is how many readings the accepted batches hold.
	Readings uint64
}

// stallWait is how long a publish waits when the JetStream connection has
// messaging.MaxPendingPublishes unacknowledged (every call's together):
// past it, the call fails with ErrBacklog rather than buffer more.
const stallWait = 5 * time.Second

// batchNamespace is the UUID namespace of the batch ids: the event id of a
// batch is the UUIDv5 of "<device>/<sequence>" in it.
var batchNamespace = uuid.MustParse("5f0c1d2e-7a43-4b8e-9c61-3e2d7f4a8b90")

// BatchID is the event id, and Nats-Msg-Id, of the batch sequence of
// device (a canonical UUID): the same batch sent twice is the same event,
// which JetStream's duplicate window drops and processed_events never
// counts twice.
func BatchID(device string, sequence uint64) string {
	return uuid.NewSHA1(batchNamespace, []byte(device+"/"+strconv.FormatUint(sequence, 10))).String()
}

// Ingestion publishes the batches of one call to JetStream, pipelined: at
// most Limits.InFlight await their acknowledgement, and Add waits for the
// oldest before publishing more, so a client that sends faster than
// JetStream acknowledges is held back. It is not safe for concurrent use.
type Ingestion struct {
	s       *Service
	pending []pendingBatch // oldest first
	done    Ingested
}

// pendingBatch is a published batch awaiting its acknowledgement.
type pendingBatch struct {
	future   jetstream.PubAckFuture
	device   string
	sequence uint64
	readings int
}

// NewIngestion starts the ingestion of one call.
func (s *Service) NewIngestion() *Ingestion { return &Ingestion{s: s} }

// IngestBatch publishes batches and waits for JetStream's acknowledgement
// of each (IngestReadings in one call).
func (s *Service) IngestBatch(ctx context.Context, batches []*telemetryv1.ReadingBatch) (Ingested, error) {
	in := s.NewIngestion()
	if err := in.Add(ctx, batches...); err != nil {
		return Ingested{}, err
	}
	return in.Wait(ctx)
}

// Add publishes batches as telemetry.raw.v1 events. Every batch is checked
// against the contract and the devices' rate limits first, and nothing is
// published unless all pass. It returns once each is handed to JetStream;
// Wait collects the acknowledgements.
func (in *Ingestion) Add(ctx context.Context, batches ...*telemetryv1.ReadingBatch) error {
	msgs := make([]*nats.Msg, len(batches))
	raws := make([]*telemetryeventsv1.TelemetryRaw, len(batches))
	readings := map[string]int{}
	for i, b := range batches {
		raw, msg, err := in.s.encode(ctx, b)
		if err != nil {
			return fmt.Errorf("batches[%d]: %w", i, err)
		}
		msgs[i], raws[i] = msg, raw
		readings[raw.GetDeviceId()] += len(raw.GetReadings())
	}
	if err := in.s.limiter.take(readings, time.Now()); err != nil {
		return err
	}
	for i, msg := range msgs {
		for len(in.pending) >= in.s.limiter.limits.InFlight {
			if err := in.settleOldest(ctx); err != nil {
				return err
			}
		}
		raw := raws[i]
		f, err := in.s.JS.PublishMsgAsync(msg, jetstream.WithMsgID(msg.Header.Get(event.HeaderMsgID)), jetstream.WithStallWait(stallWait))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return in.backlog(raw.GetDeviceId(), raw.GetSequence(), "not published", err)
		}
		if err != nil {
			return fmt.Errorf("publish device %s sequence %d: %w", raw.GetDeviceId(), raw.GetSequence(), err)
		}
		in.pending = append(in.pending, pendingBatch{f, raw.GetDeviceId(), raw.GetSequence(), len(raw.GetReadings())})
	}
	return nil
}

// Wait waits for the acknowledgement of every batch published and returns
// what JetStream did with them. An error means some were not acknowledged:
// send them again (those stored are then duplicates).
func (in *Ingestion) Wait(ctx context.Context) (Ingested, error) {
	for len(in.pending) > 0 {
		if err := in.settleOldest(ctx); err != nil {
			return Ingested{}, err
		}
	}
	return in.done, nil
}

// backlog is ErrBacklog for the batch of device and sequence. JetStream's
// own error is logged, not returned: the client learns which batch to send
// again, not NATS's internals.
func (in *Ingestion) backlog(device string, sequence uint64, what string, err error) error {
	in.s.Log.Warn("telemetry: batch "+what, "device", device, "sequence", sequence, "err", err)
	return fmt.Errorf("%w: device %s sequence %d %s", ErrBacklog, device, sequence, what)
}

// settleOldest waits for the acknowledgement of the oldest pending batch
// and counts it.
func (in *Ingestion) settleOldest(ctx context.Context) error {
	p := in.pending[0]
	in.pending[0] = pendingBatch{}
	in.pending = in.pending[1:]
	// The connection fails a future after messaging.PublishTimeout; the
	// timer covers a JetStream made otherwise.
	timeout := time.NewTimer(messaging.PublishTimeout + time.Second)
	defer timeout.Stop()
	select {
	case ack := <-p.future.Ok():
		if ack.Duplicate {
			in.done.Duplicates++
		} else {
			in.done.Accepted++
			in.done.Readings += uint64(p.readings)
		}
		return nil
	case err := <-p.future.Err():
		return in.backlog(p.device, p.sequence, "not acknowledged", err)
	case <-timeout.C:
		return fmt.Errorf("%w: device %s sequence %d: no acknowledgement in %v", ErrBacklog, p.device, p.sequence, messaging.PublishTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// encode makes b a telemetry.raw.v1 event (validated, in the shared
// envelope, with its id derived from device and sequence) and the NATS
// message that carries it.
func (s *Service) encode(ctx context.Context, b *telemetryv1.ReadingBatch) (*telemetryeventsv1.TelemetryRaw, *nats.Msg, error) {
	device, err := uuid.Parse(b.GetDeviceId())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: device_id %q is not a UUID", ErrInvalid, b.GetDeviceId())
	}
	if err := checkMeasuredAt(b.GetMeasuredAt(), time.Now()); err != nil {
		return nil, nil, err
	}
	raw := &telemetryeventsv1.TelemetryRaw{
		DeviceId:        device.String(), // canonical: one device, one key
		Sequence:        b.GetSequence(),
		Readings:        make([]*telemetryeventsv1.Reading, len(b.GetReadings())),
		MeasuredAt:      b.GetMeasuredAt(),
		FirmwareVersion: b.GetFirmwareVersion(),
	}
	for i, r := range b.GetReadings() {
		raw.Readings[i] = &telemetryeventsv1.Reading{Metric: r.GetMetric(), Value: r.GetValue(), Unit: r.GetUnit()}
	}
	env, err := s.NewEvent(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	env.Id = BatchID(raw.GetDeviceId(), raw.GetSequence())
	env.CorrelationId = env.GetId()
	data, err := event.Encode(env)
	if err != nil {
		return nil, nil, err
	}
	spec, err := event.SpecOf(raw)
	if err != nil {
		return nil, nil, err
	}
	msg := &nats.Msg{Subject: spec.SubjectFor(env.GetPartitionKey()), Data: data, Header: event.Headers(env)}
	if size, most := len(data)+headerBytes(msg.Header), s.JS.Conn().MaxPayload(); int64(size) > most {
		return nil, nil, fmt.Errorf("%w: the batch is %d bytes as an event, more than the %d JetStream takes: send fewer readings per batch", ErrInvalid, size, most)
	}
	return raw, msg, nil
}

// MaxBatchAge is how long ago a batch may have been measured: the
// retention of the telemetry stream (telemetry.raw's retention_days). A
// batch's event id is its (device, sequence), so a device may send a batch
// again at any time, and only processed_events, kept twice the stream's
// retention and a day (messaging.Prune), tells that it was counted: an
// older batch sent again would be counted twice.
const MaxBatchAge = 7 * 24 * time.Hour

// MaxClockSkew is how far in the future of the server's clock a batch may
// have been measured (a device's clock running ahead).
const MaxClockSkew = time.Hour

// checkMeasuredAt refuses a batch measured at a time that is no timestamp
// (seconds past year 9999, which the protobuf binary format carries and
// PostgreSQL cannot store), more than MaxBatchAge before now or more than
// MaxClockSkew after it.
func checkMeasuredAt(ts *timestamppb.Timestamp, now time.Time) error {
	if err := ts.CheckValid(); err != nil {
		return fmt.Errorf("%w: measured_at: %w", ErrInvalid, err)
	}
	switch at := ts.AsTime(); {
	case at.Before(now.Add(-MaxBatchAge)):
		return fmt.Errorf("%w: measured_at %s is more than %v ago: batches are taken for %v after they are measured",
			ErrInvalid, at.Format(time.RFC3339), MaxBatchAge, MaxBatchAge)
	case at.After(now.Add(MaxClockSkew)):
		return fmt.Errorf("%w: measured_at %s is more than %v ahead of the server's clock (%s): check the device's clock",
			ErrInvalid, at.Format(time.RFC3339), MaxClockSkew, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// headerBytes is about what h takes on the wire.
func headerBytes(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
