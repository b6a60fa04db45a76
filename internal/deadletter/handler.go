package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"connectrpc.com/connect"

	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	"github.com/shopbus/shopbus/internal/auth"
	"github.com/shopbus/shopbus/internal/event"
)

// Handler serves the DeadLetterService from a Store.
type Handler struct {
	store *Store
	log   *slog.Logger
}

var _ deadletterv1connect.DeadLetterServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of store.
func NewHandler(store *Store, log *slog.Logger) *Handler { return &Handler{store: store, log: log} }

// ListDeadLetters implements deadletterv1connect.DeadLetterServiceHandler.
func (h *Handler) ListDeadLetters(ctx context.Context, req *connect.Request[deadletterv1.ListDeadLettersRequest]) (*connect.Response[deadletterv1.ListDeadLettersResponse], error) {
	m := req.Msg
	size := int(m.GetPageSize())
	if size == 0 {
		size = 50
	}
	dls, next, err := h.store.list(ctx, Filter{Stream: m.GetOriginalStream(), Consumer: m.GetConsumer(), EventType: m.GetEventType(), Reason: m.GetReason()}, m.GetAfterId(), size)
	if err != nil {
		return nil, h.toConnect(err)
	}
	for i, dl := range dls {
		// The data is read only to find the values to redact: a list
		// carries none.
		dls[i] = Redact(dl)
		dls[i].Data, dls[i].DataWithheld = nil, false
	}
	stats, err := h.store.Stats(ctx)
	if err != nil {
		return nil, h.toConnect(err)
	}
	return connect.NewResponse(&deadletterv1.ListDeadLettersResponse{DeadLetters: dls, NextAfterId: next, Stats: stats}), nil
}

// GetDeadLetter implements deadletterv1connect.DeadLetterServiceHandler.
// The dead letter comes back redacted (Redact) unless the request sets
// reveal_personal and the caller holds the admin role: a reveal without it
// is PermissionDenied, and every reveal is logged.
func (h *Handler) GetDeadLetter(ctx context.Context, req *connect.Request[deadletterv1.GetDeadLetterRequest]) (*connect.Response[deadletterv1.GetDeadLetterResponse], error) {
	reveal := req.Msg.GetRevealPersonal()
	caller, authenticated := auth.FromContext(ctx)
	if reveal && (!authenticated || !caller.Admin) {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
			"reveal_personal: personal and sensitive values are shown only to a caller with the %q role or the admin token; "+
				"ask without reveal_personal for the redacted dead letter", auth.AdminRole))
	}
	dl, err := h.store.Get(ctx, req.Msg.GetId())
	if err != nil {
		return nil, h.toConnect(err)
	}
	if !reveal {
		return connect.NewResponse(&deadletterv1.GetDeadLetterResponse{DeadLetter: Redact(dl)}), nil
	}
	// An audit record of who saw personal data, never the data.
	h.log.Info("deadletter: personal data revealed", "id", dl.GetId(), "event_type", dl.GetEventType(),
		"by", caller.Subject, "procedure", req.Spec().Procedure)
	return connect.NewResponse(&deadletterv1.GetDeadLetterResponse{DeadLetter: dl}), nil
}

// RedriveDeadLetters implements deadletterv1connect.DeadLetterServiceHandler.
func (h *Handler) RedriveDeadLetters(ctx context.Context, req *connect.Request[deadletterv1.RedriveDeadLettersRequest]) (*connect.Response[deadletterv1.RedriveDeadLettersResponse], error) {
	res := &deadletterv1.RedriveDeadLettersResponse{}
	for _, id := range req.Msg.GetIds() {
		seq, err := h.store.Redrive(ctx, id)
		res.Results = append(res.Results, result(id, seq, err))
	}
	return connect.NewResponse(res), nil
}

// DiscardDeadLetters implements deadletterv1connect.DeadLetterServiceHandler.
func (h *Handler) DiscardDeadLetters(ctx context.Context, req *connect.Request[deadletterv1.DiscardDeadLettersRequest]) (*connect.Response[deadletterv1.DiscardDeadLettersResponse], error) {
	res := &deadletterv1.DiscardDeadLettersResponse{}
	for _, id := range req.Msg.GetIds() {
		res.Results = append(res.Results, result(id, 0, h.store.Discard(ctx, id)))
	}
	return connect.NewResponse(res), nil
}

func result(id, seq uint64, err error) *deadletterv1.Result {
	r := &deadletterv1.Result{Id: id, Ok: err == nil, NewSequence: seq}
	if err != nil {
		// An error may name the original subject, whose last token is a
		// personal partition key for some events.
		words := strings.Fields(err.Error())
		for i, w := range words {
			words[i] = event.RedactSubject(w)
		}
		r.Error = strings.Join(words, " ")
	}
	return r
}

func (h *Handler) toConnect(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	h.log.Error("deadletter: request failed", "err", err)
	return connect.NewError(connect.CodeUnavailable, errors.New("the dead-letter queue is unavailable; retry"))
}
