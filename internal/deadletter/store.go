package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
)

// Errors of the Store.
var (
	// ErrNotFound means no dead letter has the id.
	ErrNotFound = errors.New("dead letter not found")
	// ErrNotRedrivable means a dead letter cannot be redriven: its
	// original is missing, or its subject is the DLQ's own.
	ErrNotRedrivable = errors.New("dead letter cannot be redriven")
)

// Store reads and changes the DLQ stream.
type Store struct {
	js jetstream.JetStream
}

// NewStore returns a store on js.
func NewStore(js jetstream.JetStream) *Store { return &Store{js: js} }

// maxScan bounds how many dead letters one List call reads.
const maxScan = 10_000

// Filter selects dead letters; empty fields match all.
type Filter struct {
	Stream, Consumer, EventType string
	Reason                      deadletterv1.Reason
}

// List returns up to size dead letters with ids above after that match f,
// oldest first, without their data, and the id to continue after (0 when
// there are no more).
func (s *Store) List(ctx context.Context, f Filter, after uint64, size int) ([]*deadletterv1.DeadLetter, uint64, error) {
	dls, next, err := s.list(ctx, f, after, size)
	for _, dl := range dls {
		dl.Data = nil
	}
	return dls, next, err
}

// list is List with each dead letter's data, which redaction reads.
func (s *Store) list(ctx context.Context, f Filter, after uint64, size int) ([]*deadletterv1.DeadLetter, uint64, error) {
	stream, err := s.js.Stream(ctx, Stream)
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: %w", err)
	}
	var out []*deadletterv1.DeadLetter
	seq := max(after+1, info.State.FirstSeq)
	for scanned := 0; seq <= info.State.LastSeq && scanned < maxScan; seq, scanned = seq+1, scanned+1 {
		raw, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // redriven or discarded
		}
		if err != nil {
			return nil, 0, fmt.Errorf("jetstream: dead letter %d: %w", seq, err)
		}
		dl := toProto(raw)
		dl.Data = raw.Data
		if !f.matches(dl) {
			continue
		}
		if len(out) == size {
			return out, out[len(out)-1].GetId(), nil
		}
		out = append(out, dl)
	}
	if seq <= info.State.LastSeq && len(out) > 0 {
		return out, out[len(out)-1].GetId(), nil // scan budget used: continue later
	}
	if seq <= info.State.LastSeq {
		return out, seq - 1, nil
	}
	return out, 0, nil
}

func (f Filter) matches(dl *deadletterv1.DeadLetter) bool {
	return (f.Stream == "" || f.Stream == dl.GetOriginalStream()) &&
		(f.Consumer == "" || f.Consumer == dl.GetConsumer()) &&
		(f.EventType == "" || f.EventType == dl.GetEventType()) &&
		(f.Reason == deadletterv1.Reason_REASON_UNSPECIFIED || f.Reason == dl.GetReason())
}

// Stats describes the DLQ stream: its size and limits.
func (s *Store) Stats(ctx context.Context) (*deadletterv1.Stats, error) {
	stream, err := s.js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &deadletterv1.Stats{
		Messages: info.State.Msgs, Bytes: info.State.Bytes,
		MaxBytes: info.Config.MaxBytes, MaxAgeSeconds: int64(info.Config.MaxAge / time.Second),
	}, nil
}

// Get returns the dead letter id, with its original message.
func (s *Store) Get(ctx context.Context, id uint64) (*deadletterv1.DeadLetter, error) {
	raw, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	dl := toProto(raw)
	dl.Data = raw.Data
	return dl, nil
}

func (s *Store) get(ctx context.Context, id uint64) (*jetstream.RawStreamMsg, error) {
	stream, err := s.js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	raw, err := stream.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: dead letter %d: %w", id, err)
	}
	return raw, nil
}

// Redrive republishes the message dead letter id is the copy of, read back
// from its stream (never the copy: ErrNotRedrivable when the original is
// gone, by retention or otherwise), to its original subject, with its
// original headers but JetStream's own (Nats-*) and a new Nats-Msg-Id (the
// original one is still inside the stream's duplicate window, or would be
// dropped as a duplicate), into the original stream only; then it removes
// the dead letter. The consumer
// handles the event again; its processed_events table keeps an event that
// had its effect from applying twice. It returns the new stream sequence.
func (s *Store) Redrive(ctx context.Context, id uint64) (uint64, error) {
	raw, err := s.get(ctx, id)
	if err != nil {
		return 0, err
	}
	h := raw.Header
	origSubject, origStream := h.Get(HeaderOriginalSubject), h.Get(HeaderOriginalStream)
	switch {
	case h.Get(HeaderOriginalMissing) == "true" || origSubject == "":
		return 0, fmt.Errorf("%w: %d: the original message was gone when it was dead-lettered", ErrNotRedrivable, id)
	case strings.HasPrefix(origSubject, SubjectPrefix) || strings.HasPrefix(origSubject, "$JS.") ||
		origStream == Stream || origStream == AdvisoryStream:
		return 0, fmt.Errorf("%w: %d: its subject %s belongs to the dead-letter queue itself", ErrNotRedrivable, id, origSubject)
	}
	// The event republished is the original, read back from its stream,
	// never the dead letter's copy: whoever may file a dead letter (a
	// service, for its consumers) must not get an event of its choosing
	// published by the platform.
	orig, err := s.original(ctx, h)
	if err != nil {
		return 0, fmt.Errorf("%w: %d: %w", ErrNotRedrivable, id, err)
	}
	if orig.Subject != origSubject {
		return 0, fmt.Errorf("%w: %d: it says its original was on %s, but %s #%s is on %s", ErrNotRedrivable, id,
			origSubject, origStream, h.Get(HeaderOriginalSequence), orig.Subject)
	}
	// Its headers, but JetStream's own (Nats-*): they were instructions to
	// the server for the first publish (its id, an atomic batch's id and
	// sequence) and would be taken as such again.
	out := nats.Header{}
	for k, vs := range orig.Header {
		if !strings.HasPrefix(k, "Nats-") {
			out[k] = vs
		}
	}
	data := orig.Data
	msgID := h.Get(HeaderOriginalMsgID)
	if msgID == "" {
		msgID = strings.TrimPrefix(raw.Subject, SubjectPrefix)
	}
	out.Set("Shopbus-Redriven-From", strconv.FormatUint(id, 10))
	// Published where it was first published: the stream inserts its
	// partition again.
	origSubject = messaging.PublishedSubject(origSubject)
	ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: origSubject, Data: data, Header: out},
		jetstream.WithMsgID(msgID+":redrive:"+strconv.FormatUint(id, 10)), jetstream.WithExpectStream(origStream))
	if err != nil {
		return 0, fmt.Errorf("redrive %d to %s: %w", id, origSubject, err)
	}
	if err := s.Discard(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
		return ack.Sequence, fmt.Errorf("redriven to %s #%d, but not removed from the DLQ: %w", origSubject, ack.Sequence, err)
	}
	return ack.Sequence, nil
}

// original returns the message a dead letter is the copy of, from its
// stream.
func (s *Store) original(ctx context.Context, h nats.Header) (*jetstream.RawStreamMsg, error) {
	seq, err := strconv.ParseUint(h.Get(HeaderOriginalSequence), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("original sequence %q: %w", h.Get(HeaderOriginalSequence), err)
	}
	stream, err := s.js.Stream(ctx, h.Get(HeaderOriginalStream))
	if err != nil {
		return nil, fmt.Errorf("original stream %s: %w", h.Get(HeaderOriginalStream), err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("the original, %s #%d, is gone from its stream: %w", h.Get(HeaderOriginalStream), seq, err)
	}
	if raw.Header.Get(nats.MsgIdHdr) != h.Get(HeaderOriginalMsgID) {
		return nil, fmt.Errorf("%s #%d is no longer the original message (its stream was recreated)", h.Get(HeaderOriginalStream), seq)
	}
	return raw, nil
}

// Discard removes the dead letter id.
func (s *Store) Discard(ctx context.Context, id uint64) error {
	stream, err := s.js.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := stream.DeleteMsg(ctx, id); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		return fmt.Errorf("jetstream: delete dead letter %d: %w", id, err)
	}
	return nil
}

func toProto(raw *jetstream.RawStreamMsg) *deadletterv1.DeadLetter {
	h := raw.Header
	num := func(k string) uint64 { n, _ := strconv.ParseUint(h.Get(k), 10, 64); return n }
	ts := func(k string) *timestamppb.Timestamp {
		t, err := time.Parse(time.RFC3339Nano, h.Get(k))
		if err != nil {
			return nil
		}
		return timestamppb.New(t)
	}
	reason := deadletterv1.Reason_REASON_TERMINATED
	if h.Get(HeaderReason) == ReasonMaxDeliveries {
		reason = deadletterv1.Reason_REASON_MAX_DELIVERIES
	}
	// Headers are bytes, copied from the original message as they came,
	// and a protobuf string must be UTF-8: one invalid byte would fail
	// every page of the list that holds the letter.
	text := func(name string) string { return strings.ToValidUTF8(h.Get(name), "\uFFFD") }
	dl := &deadletterv1.DeadLetter{
		Id:               raw.Sequence,
		OriginalSubject:  text(HeaderOriginalSubject),
		OriginalStream:   text(HeaderOriginalStream),
		OriginalSequence: num(HeaderOriginalSequence),
		Consumer:         text(HeaderOriginalConsumer),
		Deliveries:       num(HeaderDeliveryCount),
		Reason:           reason,
		Error:            text(HeaderExceptionMessage),
		FirstFailureAt:   ts(HeaderFirstFailure),
		FailedAt:         ts(HeaderLastFailure),
		PublishedAt:      ts(HeaderOriginalTimestamp),
		EventType:        text(event.HeaderType),
		EventId:          text(HeaderOriginalMsgID),
		OriginalMissing:  h.Get(HeaderOriginalMissing) == "true",
		Headers:          map[string]string{},
	}
	if v, err := strconv.ParseUint(h.Get(event.HeaderVersion), 10, 32); err == nil {
		dl.EventVersion = uint32(v)
	}
	for k := range h {
		dl.Headers[strings.ToValidUTF8(k, "\uFFFD")] = text(k)
	}
	return dl
}
