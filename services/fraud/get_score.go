package fraud

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	fraudeventsv1 "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
	fraudv1 "github.com/shopbus/shopbus/gen/go/shopbus/fraud/v1"
)

// GetScore returns the score of an order, or ErrNotFound when it has none
// (yet): one statement.
func (s *Service) GetScore(ctx context.Context, orderID string) (*fraudv1.Score, error) {
	sc := &fraudv1.Score{OrderId: orderID}
	var decision string
	var at time.Time
	err := s.Pool.QueryRow(ctx, `SELECT score, decision, reasons, model_version, scored_at FROM scores WHERE order_id = $1`, orderID).
		Scan(&sc.Score, &decision, &sc.ReasonCodes, &sc.ModelVersion, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("get score %s: %w", orderID, err)
	}
	sc.Decision = fraudeventsv1.Decision(fraudeventsv1.Decision_value["DECISION_"+decision])
	sc.ScoredAt = timestamppb.New(at)
	return sc, nil
}
