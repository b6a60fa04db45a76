// Package groups is the operator's view of the consumer groups: it serves
// the admin GroupService (`shopbus groups`), which lists each group of
// instances sharing a durable consumer, its live members, and per partition
// the owner and the backlog, as messaging.ListGroups reads them from
// JetStream.
package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	groupv1 "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
	"github.com/shopbus/shopbus/internal/messaging"
)

// ListTimeout bounds how long ListGroups waits for JetStream. Listing the
// groups' KV buckets has no timeout of its own: while NATS is down, the
// client waits for it to come back, and without this bound the RPC would
// wait as long.
const ListTimeout = 5 * time.Second

// ErrNotFound means no consumer group has the name asked for.
var ErrNotFound = errors.New("no such consumer group")

// Handler serves the GroupService from JetStream.
type Handler struct {
	js  jetstream.JetStream
	log *slog.Logger
}

var _ groupv1connect.GroupServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of the consumer groups on js.
func NewHandler(js jetstream.JetStream, log *slog.Logger) *Handler {
	return &Handler{js: js, log: log}
}

// ListGroups implements groupv1connect.GroupServiceHandler.
func (h *Handler) ListGroups(ctx context.Context, req *connect.Request[groupv1.ListGroupsRequest]) (*connect.Response[groupv1.ListGroupsResponse], error) {
	lctx, cancel := context.WithTimeout(ctx, ListTimeout)
	defer cancel()
	groups, err := messaging.ListGroups(lctx, h.js)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	name := req.Msg.GetName()
	res := &groupv1.ListGroupsResponse{}
	for _, g := range groups {
		if name == "" || g.Name == name {
			res.Groups = append(res.Groups, toProto(g))
		}
	}
	if name != "" && len(res.Groups) == 0 {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("%w: %q", ErrNotFound, name))
	}
	return connect.NewResponse(res), nil
}

func toProto(g messaging.Group) *groupv1.Group {
	pg := &groupv1.Group{Name: g.Name, Stream: g.Stream, Strategy: strategy(g.Strategy)}
	for _, m := range g.Members {
		pg.Members = append(pg.Members, &groupv1.Member{
			Instance: m.Instance, Host: m.Host, Pid: int64(m.PID), Since: timestamp(m.Since),
		})
	}
	for _, p := range g.Partitions {
		pg.Partitions = append(pg.Partitions, &groupv1.Partition{
			Partition:   int32(p.Partition),
			Consumer:    p.Consumer,
			Owner:       p.Owner,
			OwnerSince:  timestamp(p.OwnerSince),
			Pending:     p.Pending,
			AckPending:  uint64(max(p.AckPending, 0)),
			Redelivered: uint64(max(p.Redelivered, 0)),
			Missing:     p.Missing,
		})
	}
	return pg
}

func strategy(s messaging.Strategy) groupv1.Strategy {
	switch s {
	case messaging.RoundRobin:
		return groupv1.Strategy_STRATEGY_ROUND_ROBIN
	case messaging.KeyBased:
		return groupv1.Strategy_STRATEGY_KEY_BASED
	}
	return groupv1.Strategy_STRATEGY_UNSPECIFIED
}

// timestamp is t, or nil when t is the zero time (not known).
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// toConnect maps an error reading the groups to its Connect code: Canceled
// or DeadlineExceeded when the caller's ctx ended, Unavailable otherwise
// (NATS down, unreachable or not answering in time). What JetStream said
// stays in the log: clients see only that the groups cannot be read now.
func (h *Handler) toConnect(ctx context.Context, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return connect.NewError(connect.CodeCanceled, context.Canceled)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("listing the consumer groups took longer than the deadline"))
	}
	h.log.Error("groups: list failed", "err", err)
	return connect.NewError(connect.CodeUnavailable, errors.New("the consumer groups cannot be read now (NATS unavailable); retry"))
}
