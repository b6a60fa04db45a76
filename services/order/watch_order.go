package order

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
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
//
// It reads the order once. A notification from the transaction that moved
// the order carries its new status and time, so it is not read again; an
// order REJECTED is, for its reason, and so is every order when
// notifications may have been lost.
func (s *Service) WatchOrder(ctx context.Context, id string, send func(*orderv1.Order) error) error {
	if u, err := uuid.Parse(id); err == nil {
		id = u.String() // as notifications name it
	}
	// Wait before reading, so a decision between the read and the wait is
	// not missed.
	w, stop := s.decided.wait(id)
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
		case <-w.wake:
		case <-recheck.C:
		}
		recheck.Reset(watchRecheck)
		if n := w.take(); n.status != "" && n.status != "REJECTED" {
			// A notification older than the order as read changes nothing.
			if !n.at.Before(o.GetUpdatedAt().AsTime()) {
				o.Status, o.UpdatedAt = statusOf(n.status), timestamppb.New(n.at)
			}
			continue
		}
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

// notifyChunk is how many orders one notification names: its payload
// holds under 8000 bytes, and an order takes at most 47 (id, space,
// status, comma).
const notifyChunk = 150

// queueNotify queues on b the notifications that name the orders moved,
// with their new status, on decidedChannel, for the WatchOrder streams of
// every order process. PostgreSQL delivers them once b's transaction
// commits. A payload is "<micros>;<id> <STATUS>,<id> <STATUS>…", where micros is
// the transaction's now() in microseconds since 1970: the orders'
// updated_at.
func queueNotify(b *pgx.Batch, moved []transition) {
	for chunk := range slices.Chunk(moved, notifyChunk) {
		var p strings.Builder
		for i, t := range chunk {
			if i > 0 {
				p.WriteByte(',')
			}
			p.WriteString(t.id + " " + t.to)
		}
		b.Queue(`SELECT pg_notify($1, (extract(epoch FROM now()) * 1000000)::bigint || ';' || $2)`, decidedChannel, p.String())
	}
}

// news is what a notification said of one order: its status and the time
// it took it. The zero news says nothing: read the order.
type news struct {
	status string
	at     time.Time
}

// parseNotification calls each with every order a payload names and what
// it says of it. A payload of bare ids, comma-separated (an order process
// of an earlier version), says nothing of their status, nor does one that
// does not parse.
func parseNotification(payload string, each func(id string, n news)) {
	var at time.Time
	if head, rest, ok := strings.Cut(payload, ";"); ok {
		micros, err := strconv.ParseInt(head, 10, 64)
		if err == nil {
			at = time.UnixMicro(micros)
		}
		payload = rest
	}
	for entry := range strings.SplitSeq(payload, ",") {
		id, status, _ := strings.Cut(entry, " ")
		if at.IsZero() {
			status = ""
		}
		each(id, news{status: status, at: at})
	}
}

// decisions wakes the WatchOrder streams of this process when their order
// is decided, by any process: it listens on decidedChannel.
type decisions struct {
	mu      sync.Mutex
	waiting map[string]map[*watch]struct{}
}

func newDecisions() *decisions {
	return &decisions{waiting: map[string]map[*watch]struct{}{}}
}

// A watch is one WatchOrder stream's wait for news of its order.
type watch struct {
	wake chan struct{} // receives when the order may have changed
	mu   sync.Mutex
	last news // the latest notification's news, until taken
}

// tell keeps n as the latest news and wakes the watch.
func (w *watch) tell(n news) {
	w.mu.Lock()
	w.last = n
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the latest news and forgets it.
func (w *watch) take() news {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.last
	w.last = news{}
	return n
}

// wait returns a watch of order id, and the function that stops it.
func (d *decisions) wait(id string) (*watch, func()) {
	w := &watch{wake: make(chan struct{}, 1)}
	d.mu.Lock()
	if d.waiting[id] == nil {
		d.waiting[id] = map[*watch]struct{}{}
	}
	d.waiting[id][w] = struct{}{}
	d.mu.Unlock()
	return w, func() {
		d.mu.Lock()
		delete(d.waiting[id], w)
		if len(d.waiting[id]) == 0 {
			delete(d.waiting, id)
		}
		d.mu.Unlock()
	}
}

// wakeAll wakes every watch with no news: notifications may have been
// lost.
func (d *decisions) wakeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ws := range d.waiting {
		for w := range ws {
			w.tell(news{})
		}
	}
}

// notified wakes the watches of the orders a notification's payload names
// with what it says of them.
func (d *decisions) notified(payload string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	parseNotification(payload, func(id string, n news) {
		for w := range d.waiting[id] {
			w.tell(n)
		}
	})
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
	d.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Channel != decidedChannel {
			continue
		}
		d.notified(n.Payload)
	}
}
