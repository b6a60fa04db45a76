package stack_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shopbus/shopbus/gateway"
	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/order/v1/orderv1connect"
	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/post/v1/postv1connect"
	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1/telemetryv1connect"
	"github.com/shopbus/shopbus/internal/auth"
)

// TestAuthTokenKinds: through the gateway, with JWTs, a device's token
// ("kind": "device") and a user's are not interchangeable. A device's
// token ingests its own device's readings and nothing else: another
// device's are permission_denied, and so are the user procedures
// (CreateOrder, ListOrders, SendMessage, PublishPost, FollowUser), even
// when the device id is a customer's. A user's token cannot ingest as the
// device of its own id (permission_denied, saying why); the admin role (a
// device gateway) ingests for any device; a device's token with the admin
// role is unauthenticated, and nothing of what it sends is accepted.
func TestAuthTokenKinds(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := context.Background()
	dev, other := uuid.NewString(), uuid.NewString()
	device := auth.Principal{Subject: dev, Kind: auth.Device}
	telemetryAs := func(opt connect.ClientOption) telemetryv1connect.TelemetryServiceClient {
		return telemetryv1connect.NewTelemetryServiceClient(http.DefaultClient, s.URL(), opt)
	}
	batch := func(id string, seq uint64) *connect.Request[telemetryv1.IngestBatchRequest] {
		return connect.NewRequest(&telemetryv1.IngestBatchRequest{Batches: []*telemetryv1.ReadingBatch{{
			DeviceId: id, Sequence: seq, MeasuredAt: timestamppb.New(time.Now().Add(-time.Minute)),
			Readings: []*telemetryv1.Reading{{Metric: "temperature", Value: 21.5, Unit: "Cel"}},
		}}})
	}
	refused := func(what string, err error, want connect.Code, says string) {
		t.Helper()
		if connect.CodeOf(err) != want || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want %v saying %q", what, err, want, says)
		}
	}

	// A device ingests its own readings, not another device's.
	res, err := telemetryAs(as(t, device)).IngestBatch(ctx, batch(strings.ToUpper(dev), 1))
	if err != nil || res.Msg.GetAccepted() != 1 {
		t.Errorf("a device ingesting its own readings: %v, %v; want 1 accepted", res, err)
	}
	_, err = telemetryAs(as(t, device)).IngestBatch(ctx, batch(other, 1))
	refused("a device ingesting another device's readings", err, connect.CodePermissionDenied, "is not the bearer token's device")

	// A user's token is no device's, not even the one of its own id.
	_, err = telemetryAs(as(t, auth.Principal{Subject: dev})).IngestBatch(ctx, batch(dev, 2))
	refused("a user's token ingesting as the device of its id", err, connect.CodePermissionDenied, "a user's token cannot ingest as a device")
	_, err = telemetryAs(as(t, auth.Principal{Subject: customer})).IngestBatch(ctx, batch(customer, 1))
	refused("the customer's token ingesting as the device of its id", err, connect.CodePermissionDenied, "a user's token cannot ingest as a device")

	// The admin role (a device gateway) ingests for any device.
	res, err = telemetryAs(as(t, admin)).IngestBatch(ctx, batch(other, 1))
	if err != nil || res.Msg.GetAccepted() != 1 {
		t.Errorf("an admin ingesting for a device: %v, %v; want 1 accepted", res, err)
	}

	// A device is no user, even one whose id is the customer's.
	for _, p := range []auth.Principal{device, {Subject: customer, Kind: auth.Device}} {
		orders := orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), as(t, p))
		_, err = orders.CreateOrder(ctx, connect.NewRequest(orderRequestFor("", line("MUG-001", 1))))
		refused("a device's CreateOrder", err, connect.CodePermissionDenied, "a device only ingests its own readings")
		_, err = orders.ListOrders(ctx, connect.NewRequest(&orderv1.ListOrdersRequest{}))
		refused("a device's ListOrders", err, connect.CodePermissionDenied, "a device only ingests its own readings")
		_, err = messagev1connect.NewMessageServiceClient(http.DefaultClient, s.URL(), as(t, p)).SendMessage(ctx, connect.NewRequest(&messagev1.SendMessageRequest{
			MessageId: uuid.NewString(), ConversationId: uuid.NewString(), Body: "hello from a thermostat"}))
		refused("a device's SendMessage", err, connect.CodePermissionDenied, "a device only ingests its own readings")
		posts := postv1connect.NewPostServiceClient(http.DefaultClient, s.URL(), as(t, p))
		_, err = posts.PublishPost(ctx, connect.NewRequest(&postv1.PublishPostRequest{IdempotencyKey: newKey(), Body: "buy now", Visibility: postv1.Visibility_VISIBILITY_PUBLIC}))
		refused("a device's PublishPost", err, connect.CodePermissionDenied, "a device only ingests its own readings")
		_, err = posts.FollowUser(ctx, connect.NewRequest(&postv1.FollowUserRequest{UserId: uuid.NewString()}))
		refused("a device's FollowUser", err, connect.CodePermissionDenied, "a device only ingests its own readings")
	}
	if n := s.count(t, "order", `SELECT count(*) FROM orders WHERE customer_id = $1`, dev); n != 0 {
		t.Errorf("%d orders of the device", n)
	}

	// A device's token with the admin role is no valid token at all.
	adminDevice, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": dev, "kind": "device", "roles": []string{"admin"},
		"iss": "shopbus-test", "aud": "shopbus", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	bearer := connect.WithInterceptors(gateway.BearerToken(adminDevice))
	_, err = telemetryAs(bearer).IngestBatch(ctx, batch(other, 2))
	refused("an admin device's IngestBatch", err, connect.CodeUnauthenticated, `cannot hold the "admin" role`)
	_, err = orderv1connect.NewOrderServiceClient(http.DefaultClient, s.URL(), bearer).CreateOrder(ctx, connect.NewRequest(orderRequestFor(customer, line("MUG-001", 1))))
	refused("an admin device's CreateOrder", err, connect.CodeUnauthenticated, `cannot hold the "admin" role`)
}
