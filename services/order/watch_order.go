package order

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// decidedChannel is the PostgreSQL notification channel on which the
// transaction that decides orders names them (comma-separated ids), so
// that WatchOrder streams in every order process learn of it at once.
const decidedChannel = "shopbus_order_decided"

// watchRecheck is how often a watch reads its order again without a
// notification: the safety net for notifications lost while a process's
// LISTEN connection was down.
const watchRecheck = 2 * time.Second

// WatchOrder calls send with the order as it is now, then again after each
// change of its status (REVIEW among them), until it is CONFIRMED or
// REJECTED (nil), ctx is done
// (ctx's error) or send fails (send's error). ErrNotFound if no order has
// the id.
func (s *Service) WatchOrder(ctx context.Context, id string, send func(*orderv1.Order) error) error {
	if u, err := uuid.Parse(id); err == nil {
		id = u.String() // as notifications name it
	}
	// Wait before reading, so a decision between the read and the wait is
	// not missed.
	wake, stop := s.decided.wait(id)
	defer stop()
	recheck := time.NewTimer(watchRecheck)
	defer recheck.Stop()
	o, err := s.GetOrder(ctx, id)
	if err != nil {
		return err
	}
	var sent orderv1.OrderStatus
	for {
		if o.GetStatus() != sent {
			if err := send(o); err != nil {
				return err
			}
			sent = o.GetStatus()
		}
		if st := o.GetStatus(); st == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED || st == orderv1.OrderStatus_ORDER_STATUS_REJECTED {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopping:
			return ErrStopping
		case <-wake:
		case <-recheck.C:
		}
		recheck.Reset(watchRecheck)
		// Only the status changes: read it alone.
		var status string
		var updated time.Time
		err := s.Pool.QueryRow(ctx, `SELECT status, reject_reason, updated_at FROM orders WHERE id = $1`, id).
			Scan(&status, &o.RejectReason, &updated)
		if err != nil {
			return fmt.Errorf("watch order %s: %w", id, err)
		}
		o.Status, o.UpdatedAt = statusOf(status), timestamppb.New(updated)
	}
}

// queueNotify queues on b the notification that names the orders ids,
// just decided, on decidedChannel, for the WatchOrder streams of every
// order process. PostgreSQL delivers it once b's transaction commits.
func queueNotify(b *pgx.Batch, ids []string) {
	// A payload holds under 8000 bytes: 200 ids of 37 bytes each.
	for chunk := range slices.Chunk(ids, 200) {
		b.Queue(`SELECT pg_notify($1, $2)`, decidedChannel, strings.Join(chunk, ","))
	}
}

// decisions wakes the WatchOrder streams of this process when their order
// is decided, by any process: it listens on decidedChannel.
type decisions struct {
	mu      sync.Mutex
	waiting map[string]map[chan struct{}]struct{}
}

func newDecisions() *decisions {
	return &decisions{waiting: map[string]map[chan struct{}]struct{}{}}
}

// wait returns a channel that receives when order id may have changed, and
// the function that stops waiting.
func (d *decisions) wait(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	if d.waiting[id] == nil {
		d.waiting[id] = map[chan struct{}]struct{}{}
	}
	d.waiting[id][ch] = struct{}{}
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(d.waiting[id], ch)
		if len(d.waiting[id]) == 0 {
			delete(d.waiting, id)
		}
		d.mu.Unlock()
	}
}

// wake wakes the watches of the orders ids, or every watch when ids is nil.
func (d *decisions) wake(ids []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	signal := func(chs map[chan struct{}]struct{}) {
		for ch := range chs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	if ids == nil {
		for _, chs := range d.waiting {
			signal(chs)
		}
		return
	}
	for _, id := range ids {
		signal(d.waiting[id])
	}
}

// listen holds one connection of pool listening on decidedChannel until ctx
// is done, waking the watches each notification names. When the connection
// fails it listens again after a backoff (reset once it listens), then wakes
// every watch, since notifications were lost meanwhile.
func (d *decisions) listen(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) {
	for failures := 0; ctx.Err() == nil; {
		err := d.listenOnce(ctx, pool, func() { failures = 0 })
		if ctx.Err() != nil {
			return
		}
		failures++
		wait := messaging.Backoff(failures)
		log.Warn("order: listening for decisions failed; watches read their orders every "+watchRecheck.String()+" meanwhile",
			"err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// listenOnce listens on one connection until it fails. Once it listens, it
// calls listening and wakes every watch: notifications may have been lost
// before.
func (d *decisions) listenOnce(ctx context.Context, pool *pgxpool.Pool, listening func()) error {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A listening connection never goes back to the pool.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+decidedChannel); err != nil {
		return err
	}
	listening()
	d.wake(nil)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Channel != decidedChannel {
			continue
		}
		d.wake(strings.Split(n.Payload, ","))
	}
}
