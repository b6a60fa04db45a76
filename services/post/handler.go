package post

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/post/v1/postv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect PostService from the Service. Requests are
// validated by the validation interceptor the server installs; every
// procedure acts as the authenticated caller, the user its bearer token
// names.
type Handler struct {
	svc *Service
}

var _ postv1connect.PostServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// PublishPost implements postv1connect.PostServiceHandler: the author is
// the caller.
func (h *Handler) PublishPost(ctx context.Context, req *connect.Request[postv1.PublishPostRequest]) (*connect.Response[postv1.PublishPostResponse], error) {
	author, err := user(ctx)
	if err != nil {
		return nil, err
	}
	p, replayed, err := h.svc.PublishPost(ctx, author, req.Msg)
	if err != nil {
		return nil, h.toConnect("PublishPost", err)
	}
	return connect.NewResponse(&postv1.PublishPostResponse{Post: p, Replayed: replayed}), nil
}

// GetFeed implements postv1connect.PostServiceHandler: the caller's feed.
func (h *Handler) GetFeed(ctx context.Context, req *connect.Request[postv1.GetFeedRequest]) (*connect.Response[postv1.GetFeedResponse], error) {
	reader, err := user(ctx)
	if err != nil {
		return nil, err
	}
	posts, next, err := h.svc.GetFeed(ctx, reader, req.Msg)
	if err != nil {
		return nil, h.toConnect("GetFeed", err)
	}
	return connect.NewResponse(&postv1.GetFeedResponse{Posts: posts, NextPageToken: next}), nil
}

// FollowUser implements postv1connect.PostServiceHandler: the caller
// follows the user.
func (h *Handler) FollowUser(ctx context.Context, req *connect.Request[postv1.FollowUserRequest]) (*connect.Response[postv1.FollowUserResponse], error) {
	follower, err := user(ctx)
	if err != nil {
		return nil, err
	}
	already, err := h.svc.FollowUser(ctx, follower, canonical(req.Msg.GetUserId()))
	if err != nil {
		return nil, h.toConnect("FollowUser", err)
	}
	return connect.NewResponse(&postv1.FollowUserResponse{AlreadyFollowing: already}), nil
}

// UnfollowUser implements postv1connect.PostServiceHandler: the caller
// stops following the user.
func (h *Handler) UnfollowUser(ctx context.Context, req *connect.Request[postv1.UnfollowUserRequest]) (*connect.Response[postv1.UnfollowUserResponse], error) {
	follower, err := user(ctx)
	if err != nil {
		return nil, err
	}
	was, err := h.svc.UnfollowUser(ctx, follower, canonical(req.Msg.GetUserId()))
	if err != nil {
		return nil, h.toConnect("UnfollowUser", err)
	}
	return connect.NewResponse(&postv1.UnfollowUserResponse{WasFollowing: was}), nil
}

// user is the user auth.Interceptor authenticated, as a canonical UUID: a
// caller without one (a token whose subject is no user, such as an
// operator's, or a device's token: auth.ErrDeviceToken) is
// PermissionDenied, and a handler served without the interceptor refuses
// every call rather than serve it open.
func user(ctx context.Context) (string, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return "", err
	}
	id, err := p.Customer()
	switch {
	case errors.Is(err, auth.ErrDeviceToken):
		return "", connect.NewError(connect.CodePermissionDenied, fmt.Errorf("posts, feeds and follows are a user's: %w", err))
	case err != nil:
		return "", connect.NewError(connect.CodePermissionDenied, errors.New("the bearer token's subject is not a user id (a UUID): posts, feeds and follows are a user's"))
	}
	return id, nil
}

// canonical is the canonical form of id, a UUID the validation
// interceptor checked: one user however its id is cased.
func canonical(id string) string {
	if u, err := uuid.Parse(id); err == nil {
		return u.String()
	}
	return id
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "post", Log: h.svc.Log, Retry: "retry (PublishPost with the same idempotency key)", Codes: []servicekit.Code{
		{Err: ErrUnknownSKU, Code: connect.CodeFailedPrecondition},
		{Err: ErrIdempotencyKeyReused, Code: connect.CodeAlreadyExists},
		{Err: ErrFollowSelf, Code: connect.CodeInvalidArgument},
		{Err: ErrBadPageToken, Code: connect.CodeInvalidArgument},
	}}.Connect(method, err)
}
