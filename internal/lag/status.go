package lag

import (
	"slices"
	"time"
)

// Status is a consumer's health judged over a window of samples, as
// LinkedIn's Burrow judges Kafka consumers. Higher is worse.
type Status int

const (
	// OK: the consumer keeps up; its lag was zero at least once in the
	// window, or it settles events without the lag growing.
	OK Status = iota
	// WARN: the consumer settles events but its lag grew across the
	// window: it is falling behind.
	WARN
	// STALL: the lag stayed above zero for the whole window and nothing
	// was settled: a handler is stuck, or an event is retried over and
	// over.
	STALL
	// STOP: no live instance owns the consumer (a key-based partition
	// without an owner, a round-robin group without members) in the last
	// three samples: the consumer is gone. (A dead instance's partitions
	// are unowned only until its lease expires and another takes them: one
	// or two samples.)
	STOP
	// ERR: the consumer could not be read twice in a row: its durable is
	// missing, or NATS does not answer.
	ERR
)

var statusNames = [...]string{"OK", "WARN", "STALL", "STOP", "ERR"}

// String returns the status's name: "OK", "WARN", "STALL", "STOP", "ERR".
func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return "UNKNOWN"
	}
	return statusNames[s]
}

// Sample is one reading of a durable consumer.
type Sample struct {
	// At is when it was read.
	At time.Time
	// Err is set when the consumer could not be read; the other fields
	// are then zero.
	Err error
	// Active is whether a live instance owns the consumer.
	Active bool
	// Pending are events not yet delivered, AckPending delivered and not
	// yet settled, Redelivered those delivered more than once.
	Pending     uint64
	AckPending  uint64
	Redelivered uint64
	// Delivered and Acked are the consumer sequences of the last delivery
	// and of the ack floor (messaging.PartitionState).
	Delivered, Acked uint64
	// Age is how long the oldest event not yet settled has been in the
	// stream (0 when none).
	Age time.Duration
}

// Lag is how many events the consumer has yet to settle.
func (s Sample) Lag() uint64 { return s.Pending + s.AckPending }

// stopSamples is how many samples in a row without an owner make a
// consumer STOP: at the default interval, 10 seconds or more, longer than
// a lease (5s) takes to expire and be taken over.
const stopSamples = 3

// Evaluate judges a window of samples of one durable consumer, oldest
// first; size is the window's full length. The rules, after Burrow's:
//
//   - the latest two samples failed (or the only one): ERR; when only the
//     latest failed, the window before it is judged;
//   - no live owner in the latest stopSamples samples: STOP;
//   - the lag was zero in some sample of the window: OK;
//   - a full window with the lag above zero and the ack floor unchanged:
//     STALL;
//   - at least three samples, the ack floor moved, and the lag never fell
//     and ended higher than it started: WARN;
//   - otherwise OK.
func Evaluate(window []Sample, size int) Status {
	n := len(window)
	if n == 0 {
		return OK
	}
	last := window[n-1]
	if last.Err != nil {
		if n == 1 || window[n-2].Err != nil {
			return ERR
		}
		// One failed read (a timeout) is not yet an error: judge the
		// window before it.
		return Evaluate(window[:n-1], size)
	}
	if n >= stopSamples && !slices.ContainsFunc(window[n-stopSamples:], func(s Sample) bool { return s.Err != nil || s.Active }) {
		return STOP
	}
	for _, s := range window {
		if s.Err == nil && s.Lag() == 0 {
			return OK
		}
	}
	first := window[0]
	if first.Err != nil {
		return OK // not enough evidence since the error
	}
	if n >= size && last.Acked == first.Acked {
		return STALL
	}
	if n >= 3 && last.Lag() > first.Lag() {
		growing := true
		for i := 1; i < n; i++ {
			if window[i].Err != nil || window[i].Lag() < window[i-1].Lag() {
				growing = false
				break
			}
		}
		if growing {
			return WARN
		}
	}
	return OK
}
