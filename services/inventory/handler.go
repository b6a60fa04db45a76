package inventory

import (
	"context"

	"connectrpc.com/connect"

	inventoryv1 "github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/inventory/v1/inventoryv1connect"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// Handler serves the Connect InventoryService from the Service. Requests are
// validated by the validation interceptor the server installs.
type Handler struct {
	svc *Service
}

var _ inventoryv1connect.InventoryServiceHandler = (*Handler)(nil)

// NewHandler returns the Connect handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// GetStock implements inventoryv1connect.InventoryServiceHandler.
func (h *Handler) GetStock(ctx context.Context, req *connect.Request[inventoryv1.GetStockRequest]) (*connect.Response[inventoryv1.GetStockResponse], error) {
	st, err := h.svc.GetStock(ctx, req.Msg.GetSku())
	if err != nil {
		return nil, h.toConnect("GetStock", err)
	}
	return connect.NewResponse(&inventoryv1.GetStockResponse{Stock: st}), nil
}

// ListStock implements inventoryv1connect.InventoryServiceHandler.
func (h *Handler) ListStock(ctx context.Context, req *connect.Request[inventoryv1.ListStockRequest]) (*connect.Response[inventoryv1.ListStockResponse], error) {
	stock, next, err := h.svc.ListStock(ctx, req.Msg)
	if err != nil {
		return nil, h.toConnect("ListStock", err)
	}
	return connect.NewResponse(&inventoryv1.ListStockResponse{Stock: stock, NextPageToken: next}), nil
}

// SetStock implements inventoryv1connect.InventoryServiceHandler.
func (h *Handler) SetStock(ctx context.Context, req *connect.Request[inventoryv1.SetStockRequest]) (*connect.Response[inventoryv1.SetStockResponse], error) {
	st, err := h.svc.SetStock(ctx, req.Msg.GetSku(), req.Msg.GetOnHand())
	if err != nil {
		return nil, h.toConnect("SetStock", err)
	}
	return connect.NewResponse(&inventoryv1.SetStockResponse{Stock: st}), nil
}

// Restock implements inventoryv1connect.InventoryServiceHandler.
func (h *Handler) Restock(ctx context.Context, req *connect.Request[inventoryv1.RestockRequest]) (*connect.Response[inventoryv1.RestockResponse], error) {
	st, err := h.svc.Restock(ctx, req.Msg.GetSku(), req.Msg.GetQuantity())
	if err != nil {
		return nil, h.toConnect("Restock", err)
	}
	return connect.NewResponse(&inventoryv1.RestockResponse{Stock: st}), nil
}

// SetPrice implements inventoryv1connect.InventoryServiceHandler.
func (h *Handler) SetPrice(ctx context.Context, req *connect.Request[inventoryv1.SetPriceRequest]) (*connect.Response[inventoryv1.SetPriceResponse], error) {
	st, err := h.svc.SetPrice(ctx, req.Msg.GetSku(), req.Msg.GetUnitPriceMinor(), req.Msg.GetCurrency())
	if err != nil {
		return nil, h.toConnect("SetPrice", err)
	}
	return connect.NewResponse(&inventoryv1.SetPriceResponse{Stock: st}), nil
}

// toConnect maps domain errors to Connect codes; anything unexpected is
// logged in full and reaches the client without database text.
func (h *Handler) toConnect(method string, err error) error {
	return servicekit.Errors{Service: "inventory", Log: h.svc.Log, Codes: []servicekit.Code{
		{Err: ErrNotFound, Code: connect.CodeNotFound},
		{Err: ErrBadPageToken, Code: connect.CodeInvalidArgument},
	}}.Connect(method, err)
}
