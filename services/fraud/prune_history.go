package fraud

import (
	"context"
	"fmt"
	"time"
)

// HistoryKeep is how long the read model keeps a customer's order: far
// beyond the model's hour, long enough that "first order" means none in
// the last 90 days (MODEL.md).
const HistoryKeep = 90 * 24 * time.Hour

// pruneEvery is how often Run prunes the read model.
const pruneEvery = time.Hour

// PruneHistory deletes the read model's orders created before before, and
// says how many: the read model stays bounded however long the service
// runs. Scores are kept (GetScore answers for every order scored).
func (s *Service) PruneHistory(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.Events().Exec(ctx, `DELETE FROM customer_orders WHERE created_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("prune the read model: %w", err)
	}
	return tag.RowsAffected(), nil
}

// pruneOld prunes the orders older than HistoryKeep (Run, every
// pruneEvery).
func (s *Service) pruneOld(ctx context.Context) error {
	n, err := s.PruneHistory(ctx, time.Now().Add(-HistoryKeep))
	if n > 0 {
		s.Log.Info("read model pruned", "orders", n)
	}
	return err
}
