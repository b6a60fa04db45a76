package message_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/message"
)

// example decodes a contract example of the event name.vversion.
func example(t *testing.T, name string, version uint32, path string) proto.Message {
	t.Helper()
	spec, err := event.Lookup(name, version)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e := spec.Message.New().Interface()
	if err := protojson.Unmarshal(data, e); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return e
}

// TestMessage: each event's valid example, published through the outbox,
// reaches the read model through JetStream and the consumer; an unknown key
// is ErrNotFound; an invalid example is refused, with nothing written.
func TestMessage(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	pool, schema := testenv.Postgres(t, message.Migrations)
	svc := message.New(pool, js, schema, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
	if _, err := svc.GetMessageActivity(ctx, "nothing-published"); !errors.Is(err, message.ErrNotFound) {
		t.Errorf("an unknown key: %v, want ErrNotFound", err)
	}
	const examples = "../../event-contracts/chat/message/examples/"
	published := 0
	for _, tc := range []struct {
		name           string
		version        uint32
		valid, invalid string
	}{
		{"message.sent", 1, "message.sent.v1/valid-with-mention.json", "message.sent.v1/invalid-empty-body.json"},
	} {
		env, err := svc.Publish(ctx, example(t, tc.name, tc.version, examples+tc.valid))
		if err != nil {
			t.Fatalf("%s: %v", tc.valid, err)
		}
		published++
		want := fmt.Sprintf("%s.v%d", tc.name, tc.version)
		testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			a, err := svc.GetMessageActivity(ctx, env.GetPartitionKey())
			if err != nil {
				return err
			}
			if a.GetLastEventId() != env.GetId() || a.GetLastType() != want {
				return fmt.Errorf("read model %v, want the last event %s (%s)", a, env.GetId(), want)
			}
			return nil
		})
		if _, err := svc.Publish(ctx, example(t, tc.name, tc.version, examples+tc.invalid)); err == nil {
			t.Errorf("%s was published", tc.invalid)
		}
	}
	if n := testenv.Scalar(t, pool, `SELECT count(*) FROM outbox`); n != int64(published) {
		t.Errorf("%d outbox rows, want %d: the invalid examples wrote nothing", n, published)
	}
}
