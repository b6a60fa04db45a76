package stack_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/shopbus/shopbus/gateway"
	groupv1 "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/testenv"
)

// TestGroupsAdmin: the stack's gateway serves GroupService as an admin
// procedure: without the admin token ListGroups is Unauthenticated; with it,
// it lists the services' consumer groups, each with its running member.
func TestGroupsAdmin(t *testing.T) {
	s := startStack(t, func(c *stack.Config) { c.Auth.AdminToken = "s3cret" })
	ctx := context.Background()
	anonymous := groupv1connect.NewGroupServiceClient(http.DefaultClient, s.URL())
	if _, err := anonymous.ListGroups(ctx, connect.NewRequest(&groupv1.ListGroupsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("ListGroups without the token: %v, want Unauthenticated", err)
	}
	admin := groupv1connect.NewGroupServiceClient(http.DefaultClient, s.URL(), connect.WithInterceptors(gateway.BearerToken("s3cret")))
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		res, err := admin.ListGroups(ctx, connect.NewRequest(&groupv1.ListGroupsRequest{}))
		if err != nil {
			t.Fatalf("ListGroups with the token: %v", err)
		}
		joined := len(res.Msg.GetGroups()) > 0
		for _, g := range res.Msg.GetGroups() {
			joined = joined && len(g.GetMembers()) == 1
		}
		if !joined {
			return fmt.Errorf("the groups are %v; want the services' groups, one member each", res.Msg.GetGroups())
		}
		return nil
	})
}
