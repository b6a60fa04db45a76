package message

import (
	"context"

	"connectrpc.com/connect"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect MessageService from the Service. Requests are
// validated by the validation interceptor the server installs.
type Handler struct {
	svc *Service
}

var _ messagev1connect.MessageServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// GetMessageActivity implements messagev1connect.MessageServiceHandler.
func (h *Handler) GetMessageActivity(ctx context.Context, req *connect.Request[messagev1.GetMessageActivityRequest]) (*connect.Response[messagev1.GetMessageActivityResponse], error) {
	a, err := h.svc.GetMessageActivity(ctx, req.Msg.GetKey())
	if err != nil {
		return nil, h.toConnect("GetMessageActivity", err)
	}
	return connect.NewResponse(&messagev1.GetMessageActivityResponse{Activity: a}), nil
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "message", Log: h.svc.Log, Codes: []servicekit.Code{
		{Err: ErrNotFound, Code: connect.CodeNotFound},
	}}.Connect(method, err)
}
