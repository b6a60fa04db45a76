package order

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/messaging"
)

// decidedChannel is the PostgreSQL notification channel on which the
// transaction that moves orders says what changed (queueNotify), so that
// WatchOrder streams in every order process learn of it at once.
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
// It reads the order once. The notification from the transaction that
// moves the order carries what changed (status, reject reason, fraud score)
// and when, so it is not read again, unless notifications may have been
// lost (the listener reconnected, or none came for watchRecheck).
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
		var change *orderv1.Order
		var at time.Time
		// News older than the order as read is read again rather than
		// dropped: now() is when a transaction began, so a transaction
		// that committed later may carry an earlier time.
		if n := w.take(); n.order != nil && !n.at.Before(o.GetUpdatedAt().AsTime()) {
			change, at = n.order, n.at
		} else {
			// What may change; the lines do not.
			change, err = scanOrder(s.Pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id))
			if err != nil {
				return fmt.Errorf("watch order %s: %w", id, err)
			}
			at = change.GetUpdatedAt().AsTime()
		}
		o.Status, o.RejectReason, o.Fraud, o.UpdatedAt = change.GetStatus(), change.GetRejectReason(), change.GetFraud(), timestamppb.New(at)
	}
}

// notifyBytes bounds the orders of one notification: PostgreSQL takes
// payloads under 8000 bytes.
const notifyBytes = 7000

// queueNotify queues on b the notifications of the orders moved, for the
// WatchOrder streams of every order process, on decidedChannel. PostgreSQL
// delivers them once b's transaction commits. A payload is
// {"at": micros, "orders": [order…]}: micros is the transaction's now() in
// microseconds since 1970 (the orders' updated_at), each order is
// transition.watched in protobuf's JSON. An order too large for a payload
// (a long reject reason) is named alone, by its bare id: its watches read
// it.
func queueNotify(b *pgx.Batch, moved []transition) error {
	var chunk []byte
	flush := func() {
		if len(chunk) > 0 {
			b.Queue(`SELECT pg_notify($1, json_build_object('at', (extract(epoch FROM now()) * 1000000)::bigint, 'orders', $2::json)::text)`,
				decidedChannel, string(append(chunk, ']')))
			chunk = nil
		}
	}
	for _, t := range moved {
		j, err := protojson.Marshal(t.watched)
		if err != nil {
			return fmt.Errorf("notify order %s: %w", t.id, err)
		}
		if len(j)+1 > notifyBytes {
			b.Queue(`SELECT pg_notify($1, $2)`, decidedChannel, t.id)
			continue
		}
		if len(chunk)+len(j) > notifyBytes {
			flush()
		}
		if chunk == nil {
			chunk = []byte{'['}
		} else {
			chunk = append(chunk, ',')
		}
		chunk = append(chunk, j...)
	}
	flush()
	return nil
}

// news is what a notification said of one order: the change (id, status,
// reject reason, fraud score) and when. The zero news says nothing: read
// the order.
type news struct {
	order *orderv1.Order
	at    time.Time
}

// notice is what a notification said of the order id.
type notice struct {
	id string
	news
}

// parseNotification returns every order a payload names and what it says
// of it. A payload of bare ids, comma-separated (an order process of an
// earlier version), says nothing of them. A payload that does not parse is
// an error: its orders are unknown.
func parseNotification(payload string) ([]notice, error) {
	var all []notice
	if !strings.HasPrefix(payload, "{") {
		for id := range strings.SplitSeq(payload, ",") {
			all = append(all, notice{id: id})
		}
		return all, nil
	}
	var p struct {
		At     int64             `json:"at"`
		Orders []json.RawMessage `json:"orders"`
	}
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		return nil, err
	}
	at := time.UnixMicro(p.At)
	for _, raw := range p.Orders {
		o := &orderv1.Order{}
		if err := protojson.Unmarshal(raw, o); err != nil {
			return nil, err
		}
		all = append(all, notice{id: o.GetOrderId(), news: news{order: o, at: at}})
	}
	return all, nil
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
// with what it says of them, or every watch, with no news, if it does not
// parse.
func (d *decisions) notified(payload string) error {
	all, err := parseNotification(payload)
	if err != nil {
		d.wakeAll()
		return fmt.Errorf("a notification on %s: %w", decidedChannel, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range all {
		for w := range d.waiting[n.id] {
			w.tell(n.news)
		}
	}
	return nil
}

// listen holds one connection of pool listening on decidedChannel until ctx
// is done, waking the watches each notification names. When the connection
// fails it listens again after a backoff (reset once it listens), then wakes
// every watch, since notifications were lost meanwhile.
func (d *decisions) listen(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) {
	for failures := 0; ctx.Err() == nil; {
		err := d.listenOnce(ctx, pool, func() { failures = 0 }, func(err error) {
			log.Warn("order: a notification that does not parse; its watches read their orders", "err", err)
		})
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
// before. It calls bad with a notification that does not parse (whose
// watches it woke without news).
func (d *decisions) listenOnce(ctx context.Context, pool *pgxpool.Pool, listening func(), bad func(error)) error {
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
		if err := d.notified(n.Payload); err != nil {
			bad(err)
		}
	}
}
