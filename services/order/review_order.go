package order

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// ErrNotInReview means ReviewOrder named an order that is not waiting for a
// review (or was reviewed the other way).
var ErrNotInReview = errors.New("the order is not in review")

// ReviewOrder records a person's decision on an order in REVIEW (saga.go):
// approved, it goes on as if its score had approved it (CONFIRMED once its
// stock is reserved); rejected, it is REJECTED with note as the reason and
// order.rejected is published, so that the inventory service releases what
// it reserved. The same decision again returns the order unchanged. It
// returns the order as it is after the decision.
func (s *Service) ReviewOrder(ctx context.Context, id string, approve bool, note string) (*orderv1.Order, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, notFound(id)
	}
	id = u.String()
	want := reviewRejected
	if approve {
		want = reviewApproved
	}
	var moved []transition
	err = messaging.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		orders, err := loadSaga(ctx, tx, []string{id})
		if err != nil {
			return err
		}
		o, ok := orders[id]
		switch {
		case !ok:
			return notFound(id)
		case o.review == want:
			return nil // decided so already
		case o.status != statusReview:
			return fmt.Errorf("%w: order %s is %s", ErrNotInReview, id, o.status)
		}
		o.reviewed(approve, note)
		moved, err = s.saveSaga(ctx, tx, orders)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.afterCommit(ctx, moved)
	return s.GetOrder(ctx, id)
}
