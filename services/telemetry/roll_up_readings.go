package telemetry

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	telemetryeventsv1 "github.com/shopbus/shopbus/gen/go/iot/telemetry/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// RollupConsumer is the consumer of telemetry.raw that keeps the rollups:
// round-robin, since sums, counts, minima and maxima do not depend on the
// order the batches arrive in, with two workers per instance.
func RollupConsumer() messaging.ConsumerConfig {
	return messaging.ConsumerConfig{
		Stream:   messaging.StreamName("iot", "telemetry"),
		Durable:  "telemetry-rollups",
		Subjects: []string{"iot.telemetry.raw"},
		Strategy: messaging.RoundRobin,
		Workers:  2,
	}
}

// rollupKey is one rollup row: a device's readings of a metric, in a unit,
// in a minute.
type rollupKey struct {
	device       string
	minute       time.Time
	metric, unit string
}

// rollup is what a batch adds to one row.
type rollup struct {
	count                int64
	sum, lowest, highest float64
}

// RollUpReadings adds a batch of telemetry.raw events to the rollups, each
// event once (processed_events, in the same transaction): the batch is
// aggregated here, then written with one upsert.
func (s *Service) RollUpReadings(ctx context.Context, batch []*messaging.Delivery) error {
	return messaging.OnceBatchAll(ctx, s.Events(), RollupConsumer().Durable, batch, func(ctx context.Context, tx pgx.Tx, fresh []*messaging.Delivery) error {
		sums := map[rollupKey]*rollup{}
		for _, d := range fresh {
			raw, ok := d.Event.(*telemetryeventsv1.TelemetryRaw)
			if !ok {
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("telemetry rollups: unexpected %T", d.Event))}
			}
			if err := raw.GetMeasuredAt().CheckValid(); err != nil { // not from IngestReadings, which refuses it
				return &messaging.EventError{Delivery: d, Err: messaging.Permanent(fmt.Errorf("telemetry rollups: measured_at: %w", err))}
			}
			minute := raw.GetMeasuredAt().AsTime().Truncate(time.Minute)
			for _, r := range raw.GetReadings() {
				k := rollupKey{raw.GetDeviceId(), minute, r.GetMetric(), r.GetUnit()}
				v := r.GetValue()
				if sum, ok := sums[k]; ok {
					sum.count++
					sum.sum += v
					sum.lowest, sum.highest = min(sum.lowest, v), max(sum.highest, v)
				} else {
					sums[k] = &rollup{1, v, v, v}
				}
			}
		}
		return upsertRollups(ctx, tx, sums)
	})
}

// upsertRollups adds sums to the rollup rows in one statement. Rows are
// written in key order, so that two transactions adding to the same rows
// take their locks in the same order and never deadlock.
func upsertRollups(ctx context.Context, tx pgx.Tx, sums map[rollupKey]*rollup) error {
	keys := slices.SortedFunc(maps.Keys(sums), func(a, b rollupKey) int {
		return cmp.Or(cmp.Compare(a.device, b.device), a.minute.Compare(b.minute), cmp.Compare(a.metric, b.metric), cmp.Compare(a.unit, b.unit))
	})
	n := len(keys)
	devices, metrics, units := make([]string, n), make([]string, n), make([]string, n)
	minutes := make([]time.Time, n)
	counts := make([]int64, n)
	totals, lows, highs := make([]float64, n), make([]float64, n), make([]float64, n)
	for i, k := range keys {
		r := sums[k]
		devices[i], minutes[i], metrics[i], units[i] = k.device, k.minute, k.metric, k.unit
		counts[i], totals[i], lows[i], highs[i] = r.count, r.sum, r.lowest, r.highest
	}
	_, err := tx.Exec(ctx, `INSERT INTO device_rollups AS r (device_id, minute, metric, unit, count, sum, min, max)
		SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::bigint[], $6::float8[], $7::float8[], $8::float8[])
		ON CONFLICT (device_id, minute, metric, unit) DO UPDATE SET count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
			min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max)`,
		devices, minutes, metrics, units, counts, totals, lows, highs)
	if err != nil {
		return fmt.Errorf("telemetry rollups: upsert %d rows: %w", n, err)
	}
	return nil
}
