package message_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/validate"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/testenv"
	"github.com/shopbus/shopbus/services/message"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// The test's users. agent has the admin role (agentClient).
const (
	alice = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	bob   = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	carol = "0c1d2e3f-4a5b-4c6d-8e7f-8a9b0c1d2e3f"
	dave  = "3d4e5f60-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
	agent = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
)

// fixture is the message service on a real embedded NATS and a schema of
// its own, running (outbox relay and consumer), served over HTTP by its
// Connect handler with the interceptors a gateway puts in front of it:
// bearer-token authentication (no MessageService procedure is an admin
// one) and request validation.
type fixture struct {
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	svc    *message.Service
	url    string
	signer *auth.Signer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := newIdleFixture(t)
	testenv.Run(t, f.svc)
	return f
}

// newIdleFixture is newFixture's service served, but not running: no relay
// publishes its outbox and no consumer places its messages, so its outbox
// and read model hold what the test sees them hold.
func newIdleFixture(t *testing.T) *fixture {
	t.Helper()
	rt := testenv.Runtime(t, "message")
	f := &fixture{pool: rt.Pool, js: rt.JS, svc: message.New(rt)}
	signer, err := auth.KeyPair(t.TempDir(), auth.Options{Issuer: "shopbus-test", Audience: "shopbus"})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signer.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	f.signer = signer
	notAdmin := func(string) bool { return false }
	path, h := messagev1connect.NewMessageServiceHandler(message.NewHandler(f.svc),
		connect.WithInterceptors(auth.Interceptor(auth.Config{Verifier: verifier}, notAdmin), validate.NewInterceptor()))
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// client returns a client calling as p; as nobody (no token) if p is nil.
func (f *fixture) client(t *testing.T, p *auth.Principal) messagev1connect.MessageServiceClient {
	t.Helper()
	var opts []connect.ClientOption
	if p != nil {
		tok, err := f.signer.Token(*p, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+tok)
				return next(ctx, req)
			}
		})))
	}
	return messagev1connect.NewMessageServiceClient(http.DefaultClient, f.url, opts...)
}

// user returns a client calling as the user id.
func (f *fixture) user(t *testing.T, id string) messagev1connect.MessageServiceClient {
	return f.client(t, &auth.Principal{Subject: id})
}

// admin returns a client calling as an admin (whose subject is no user).
func (f *fixture) admin(t *testing.T) messagev1connect.MessageServiceClient {
	return f.client(t, &auth.Principal{Subject: "test-admin", Admin: true})
}

// agentClient returns a client calling as agent, a user with the admin
// role.
func (f *fixture) agentClient(t *testing.T) messagev1connect.MessageServiceClient {
	return f.client(t, &auth.Principal{Subject: agent, Admin: true})
}

// count runs sql, a query of one integer, on the service's schema.
func (f *fixture) count(t *testing.T, sql string) int64 {
	t.Helper()
	return testenv.Scalar(t, f.pool, sql)
}

// listAll pages through a conversation as c, size messages a page, and
// returns every message and how many pages it took.
func listAll(ctx context.Context, c messagev1connect.MessageServiceClient, conversation string, size uint32) ([]*messagev1.Message, int, error) {
	var all []*messagev1.Message
	token := ""
	for pages := 1; ; pages++ {
		res, err := c.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ConversationId: conversation, PageSize: size, PageToken: token}))
		if err != nil {
			return nil, pages, err
		}
		all = append(all, res.Msg.GetMessages()...)
		if token = res.Msg.GetNextPageToken(); token == "" {
			return all, pages, nil
		}
	}
}

// wantCode fails the test unless err is a Connect error with code want.
func wantCode(t *testing.T, what string, err error, want connect.Code) {
	t.Helper()
	if got := connect.CodeOf(err); err == nil || got != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}
