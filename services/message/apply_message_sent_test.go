package message_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	messageeventsv1 "github.com/shopbus/shopbus/gen/go/chat/message/v1"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/message"
)

// TestApplyMessageSentOnce: every way an event can arrive twice has one
// effect. The same envelope published again inside the duplicate window is
// dropped by JetStream; published again under another Nats-Msg-Id (as a
// relay that lost its ack might) it is skipped by processed_events; a new
// envelope for a message already placed (the same message_id) changes
// nothing; a batch redelivered after its commit (the ack lost) changes
// nothing. The conversation's seqs stay 1, 2 with no gap, and an event that
// reuses a message's id in another conversation is dead-lettered alone.
func TestApplyMessageSentOnce(t *testing.T) {
	t.Parallel()
	rt := testenv.Runtime(t, "message")
	pool, js := rt.Pool, rt.JS
	svc := message.New(rt)
	ctx := context.Background()
	conversation := uuid.NewString()
	sent := func(id, conv, body string, mentions ...string) *messageeventsv1.MessageSent {
		return &messageeventsv1.MessageSent{MessageId: id, ConversationId: conv, SenderId: alice, Body: body,
			MentionedUserIds: mentions, SentAt: timestamppb.Now()}
	}
	envelope := func(m *messageeventsv1.MessageSent) *eventv1.Envelope {
		env, err := event.New(ctx, m, event.WithSource("shopbus/message"))
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	var seqs []uint64
	publish := func(env *eventv1.Envelope, msgID string, wantDuplicate bool) {
		t.Helper()
		spec, err := event.Lookup(env.GetType(), env.GetVersion())
		if err != nil {
			t.Fatal(err)
		}
		b, err := event.Encode(env)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: spec.SubjectFor(env.GetPartitionKey()), Data: b, Header: event.Headers(env)},
			jetstream.WithMsgID(msgID))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate != wantDuplicate {
			t.Fatalf("publish %s: duplicate %v, want %v", msgID, ack.Duplicate, wantDuplicate)
		}
		seqs = append(seqs, ack.Sequence)
	}

	first := uuid.NewString()
	env := envelope(sent(first, conversation, "first", bob))
	publish(env, env.GetId(), false)
	publish(env, env.GetId(), true)                                                     // JetStream's duplicate window
	publish(env, "another-msg-id-"+env.GetId(), false)                                  // the same envelope, stored again
	publish(envelope(sent(first, conversation, "first", bob)), uuid.NewString(), false) // a new envelope, the same message
	second := envelope(sent(uuid.NewString(), conversation, "second"))
	publish(second, second.GetId(), false)
	var stolen *eventv1.Envelope
	var calls atomic.Int32
	cfg := message.MessageSentConsumer()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.ConsumeBatch(runCtx, js, cfg, func(ctx context.Context, batch []*messaging.Delivery) error {
			if err := svc.ApplyMessageSent(ctx, batch); err != nil {
				return err
			}
			if calls.Add(1) == 1 {
				return errors.New("injected: the ack is lost after commit")
			}
			return nil
		}, quiet)
	}()
	testenv.WaitSettled(t, js, cfg.Stream, cfg.Durable, seqs...)
	// Another conversation (another partition, perhaps), once the message
	// is placed: a placed message's id.
	stolen = envelope(sent(first, uuid.NewString(), "first, elsewhere"))
	publish(stolen, stolen.GetId(), false)
	testenv.WaitSettled(t, js, cfg.Stream, cfg.Durable, seqs...)
	cancel()
	<-done
	if calls.Load() < 2 {
		t.Fatalf("handled %d batches, want a redelivery", calls.Load())
	}

	rows, err := pool.Query(ctx, `SELECT seq, body FROM conversation_messages WHERE conversation_id = $1 ORDER BY seq`, conversation)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var seq int64
		var body string
		if err := rows.Scan(&seq, &body); err != nil {
			t.Fatal(err)
		}
		got = append(got, body)
		if seq != int64(len(got)) {
			t.Errorf("%q has seq %d, want %d", body, seq, len(got))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Errorf("the conversation holds %q, want [first second]", got)
	}
	if n := testenv.Scalar(t, pool, `SELECT count(*) FROM conversation_messages`); n != 2 {
		t.Errorf("%d messages placed, want 2 (the stolen id is dead-lettered)", n)
	}
	var handled bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM processed_events WHERE event_id = $1)`, stolen.GetId()).Scan(&handled); err != nil || handled {
		t.Errorf("the stolen id's event was handled (%v): want it dead-lettered, not acked", err)
	}
	if n := testenv.Scalar(t, pool, `SELECT count(*) FROM conversation_participants`); n != 2 {
		t.Errorf("%d participants, want alice and bob", n)
	}
}
