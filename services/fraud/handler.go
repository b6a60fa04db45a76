package fraud

import (
	"context"

	"connectrpc.com/connect"

	fraudv1 "github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1/fraudv1connect"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect FraudService from the Service. Requests are
// validated by the validation interceptor the server installs; the gateway
// keeps every procedure to the admin role.
type Handler struct {
	svc *Service
}

var _ fraudv1connect.FraudServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// GetScore implements fraudv1connect.FraudServiceHandler.
func (h *Handler) GetScore(ctx context.Context, req *connect.Request[fraudv1.GetScoreRequest]) (*connect.Response[fraudv1.GetScoreResponse], error) {
	sc, err := h.svc.GetScore(ctx, req.Msg.GetOrderId())
	if err != nil {
		return nil, h.toConnect("GetScore", err)
	}
	return connect.NewResponse(&fraudv1.GetScoreResponse{Score: sc}), nil
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "fraud", Log: h.svc.Log, Codes: []servicekit.Code{
		{Err: ErrNotFound, Code: connect.CodeNotFound},
	}}.Connect(method, err)
}
