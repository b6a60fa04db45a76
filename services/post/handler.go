package post

import (
	"context"

	"connectrpc.com/connect"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/post/v1/postv1connect"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect PostService from the Service. Requests are
// validated by the validation interceptor the server installs.
type Handler struct {
	svc *Service
}

var _ postv1connect.PostServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// GetPostActivity implements postv1connect.PostServiceHandler.
func (h *Handler) GetPostActivity(ctx context.Context, req *connect.Request[postv1.GetPostActivityRequest]) (*connect.Response[postv1.GetPostActivityResponse], error) {
	a, err := h.svc.GetPostActivity(ctx, req.Msg.GetKey())
	if err != nil {
		return nil, h.toConnect("GetPostActivity", err)
	}
	return connect.NewResponse(&postv1.GetPostActivityResponse{Activity: a}), nil
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "post", Log: h.svc.Log, Codes: []servicekit.Code{
		{Err: ErrNotFound, Code: connect.CodeNotFound},
	}}.Connect(method, err)
}
