package gateway_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shopbus/shopbus/gateway"
	groupv1 "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/groups"
	"github.com/shopbus/shopbus/internal/testenv"
)

// h2c is an HTTP client speaking cleartext HTTP/2 only, as gRPC clients do.
var h2c = func() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}()

// startGateway serves cfg on a free port until the test ends and returns
// its base URL.
func startGateway(t *testing.T, cfg gateway.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gateway.NewServer(l.Addr().String(), gateway.Handler(cfg))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("gateway: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

// TestGroupServiceAdmin: ListGroups, an admin procedure, needs the admin
// role: from the static admin token or a JWT's roles. A customer's token is
// PermissionDenied; no token, a wrong one, or a gateway configured with no
// authentication at all is Unauthenticated; --insecure lets everyone in.
func TestGroupServiceAdmin(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	h := groups.NewHandler(js, slog.New(slog.DiscardHandler))
	if !gateway.IsAdmin(groupv1connect.GroupServiceListGroupsProcedure) {
		t.Error("ListGroups is not an admin procedure")
	}
	signer, err := auth.KeyPair(t.TempDir(), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signer.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	token := func(p auth.Principal) string {
		tok, err := signer.Token(p, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	protected := startGateway(t, gateway.Config{Groups: h, Auth: auth.Config{Verifier: verifier, AdminToken: "s3cret"}})
	unconfigured := startGateway(t, gateway.Config{Groups: h})
	open := startGateway(t, gateway.Config{Groups: h, Auth: auth.Config{Insecure: true}})
	for _, tc := range []struct {
		name, url, token string
		want             connect.Code
	}{
		{"no token", protected, "", connect.CodeUnauthenticated},
		{"wrong token", protected, "guess", connect.CodeUnauthenticated},
		{"the admin token", protected, "s3cret", 0},
		{"an admin's JWT", protected, token(auth.Principal{Subject: "ops", Admin: true}), 0},
		{"a customer's JWT", protected, token(auth.Principal{Subject: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"}), connect.CodePermissionDenied},
		{"a device's JWT", protected, token(auth.Principal{Subject: "c0ffee00-1234-4abc-8def-0123456789ab", Kind: auth.Device}), connect.CodePermissionDenied},
		{"no authentication configured", unconfigured, "s3cret", connect.CodeUnauthenticated},
		{"insecure", open, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []connect.ClientOption
			if tc.token != "" {
				opts = append(opts, connect.WithInterceptors(gateway.BearerToken(tc.token)))
			}
			for protocol, client := range map[string]groupv1connect.GroupServiceClient{
				"connect": groupv1connect.NewGroupServiceClient(http.DefaultClient, tc.url, opts...),
				"grpc":    groupv1connect.NewGroupServiceClient(h2c, tc.url, append(opts, connect.WithGRPC())...),
			} {
				_, err := client.ListGroups(context.Background(), connect.NewRequest(&groupv1.ListGroupsRequest{}))
				if got := connect.CodeOf(err); (tc.want == 0 && err != nil) || (tc.want != 0 && got != tc.want) {
					t.Errorf("%s: ListGroups: %v, want %v", protocol, err, tc.want)
				}
			}
		})
	}
}

// TestGroupServiceDiscoverable: gRPC reflection lists GroupService beside
// the other services, and gRPC health reports it serving.
func TestGroupServiceDiscoverable(t *testing.T) {
	t.Parallel()
	_, js := testenv.NATS(t)
	url := startGateway(t, gateway.Config{Groups: groups.NewHandler(js, slog.New(slog.DiscardHandler)), Auth: auth.Config{AdminToken: "s3cret"}})
	stream := grpcreflect.NewClient(h2c, url).NewStream(context.Background())
	services, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Close(); err != nil {
		t.Error(err)
	}
	if !slices.Contains(services, protoreflect.FullName(groupv1connect.GroupServiceName)) {
		t.Errorf("reflection lists %v, without %s", services, groupv1connect.GroupServiceName)
	}
	res, err := grpchealth.NewClient(h2c, url, connect.WithGRPC()).Check(context.Background(),
		&grpchealth.CheckRequest{Service: groupv1connect.GroupServiceName})
	if err != nil || res.Status != grpchealth.StatusServing {
		t.Errorf("health of %s: %v, %v", groupv1connect.GroupServiceName, res, err)
	}
}
