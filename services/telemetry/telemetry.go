// Package telemetry is the telemetry service (iot/telemetry): devices'
// readings in, per-device rollups out.
//
// Ingestion (ingest_readings.go) publishes each batch of readings straight
// to JetStream as one telemetry.raw.v1 event, without a database write:
// the event id and Nats-Msg-Id are derived from (device, sequence), so a
// batch sent again is dropped by the stream's duplicate window. Publishes
// are pipelined and a call is answered once JetStream acknowledged each of
// its batches. Per-device rate limits and bounded in-flight publishes keep
// memory bounded (limits.go). A round-robin consumer (roll_up_readings.go)
// keeps rollups per device, minute, metric and unit, each event counted
// once; GetDeviceStats reads them (get_device_stats.go). handler.go maps
// the use cases onto the Connect API and says who may call what.
package telemetry

import (
	"context"
	"errors"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Errors of the service's use cases, matched with errors.Is.
var (
	// ErrInvalid means a request breaks a rule its proto cannot state.
	ErrInvalid = errors.New("invalid request")
	// ErrRateLimited means a device sent readings faster than its limit;
	// a servicekit.RateLimitedError says when to retry.
	ErrRateLimited = errors.New("too many readings from the device: slow down")
	// ErrTooManyDevices means the service tracks as many devices as it
	// may (Limits.MaxDevices), all of them active: a new one waits.
	ErrTooManyDevices = errors.New("too many devices sending at once: retry later")
	// ErrBacklog means JetStream did not take or acknowledge a publish in
	// time: send the batches again (the ones stored are then duplicates).
	ErrBacklog = errors.New("JetStream did not acknowledge the readings in time")
)

// Service is the telemetry service. Its Runtime holds its pools, its
// JetStream and the event path's settings (servicekit).
type Service struct {
	servicekit.Runtime
	limiter *deviceLimiter
}

// New returns the telemetry service on rt (named "telemetry", its schema migrated
// with services.Migrations("telemetry") and messaging.Migrations), with
// DefaultLimits.
func New(rt servicekit.Runtime) *Service {
	return &Service{Runtime: rt, limiter: newDeviceLimiter(DefaultLimits)}
}

// SetLimits replaces the service's limits (zero fields take
// DefaultLimits'), forgetting the devices' buckets. Call it before serving.
func (s *Service) SetLimits(l Limits) error {
	l = l.WithDefaults()
	if err := l.Validate(); err != nil {
		return err
	}
	s.limiter = newDeviceLimiter(l)
	return nil
}

// Run rolls up the readings (and relays the outbox, which the service does
// not write to) until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	return s.Runtime.Run(ctx, []messaging.Subscription{{Config: RollupConsumer(), Handler: s.RollUpReadings}})
}
