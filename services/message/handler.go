package message

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	messagev1 "github.com/shopbus/shopbus/gen/go/shopbus/message/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/message/v1/messagev1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect MessageService from the Service. Requests are
// validated by the validation interceptor the server installs, and callers
// authenticated by its auth interceptor: every procedure needs a bearer
// token, none needs the admin role.
type Handler struct {
	svc *Service
}

var _ messagev1connect.MessageServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// SendMessage implements messagev1connect.MessageServiceHandler. The
// sender is the caller: its token's subject, which must be a user id. A
// conversation that has messages takes them from its participants and
// admins (Service.SendMessage).
func (h *Handler) SendMessage(ctx context.Context, req *connect.Request[messagev1.SendMessageRequest]) (*connect.Response[messagev1.SendMessageResponse], error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	sender, err := p.Customer()
	if err != nil {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only a user sends messages: the bearer token's subject is not a user id (a UUID)"))
	}
	m, replayed, err := h.svc.SendMessage(ctx, Sender{UserID: sender, Admin: p.Admin}, req.Msg)
	if err != nil {
		return nil, h.toConnect("SendMessage", err)
	}
	return connect.NewResponse(&messagev1.SendMessageResponse{Message: m, Replayed: replayed}), nil
}

// ListMessages implements messagev1connect.MessageServiceHandler: a
// conversation's participants and admins may list it.
func (h *Handler) ListMessages(ctx context.Context, req *connect.Request[messagev1.ListMessagesRequest]) (*connect.Response[messagev1.ListMessagesResponse], error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	reader := Reader{Admin: p.Admin}
	if user, err := p.Customer(); err == nil {
		reader.UserID = user
	}
	messages, next, err := h.svc.ListMessages(ctx, reader, req.Msg)
	if err != nil {
		return nil, h.toConnect("ListMessages", err)
	}
	return connect.NewResponse(&messagev1.ListMessagesResponse{Messages: messages, NextPageToken: next}), nil
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "message", Log: h.svc.Log, Retry: "retry (with the same message_id)", Codes: []servicekit.Code{
		{Err: ErrNotFound, Code: connect.CodeNotFound},
		{Err: ErrNotParticipant, Code: connect.CodePermissionDenied},
		{Err: ErrMessageIDReused, Code: connect.CodeAlreadyExists},
		{Err: ErrBadPageToken, Code: connect.CodeInvalidArgument},
		{Err: ErrInvalidRequest, Code: connect.CodeInvalidArgument},
	}}.Connect(method, err)
}
