package order

import (
	"errors"
	"testing"
	"time"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// TestRateLimiter: a customer places its burst at once, then one order per
// 1/rate; the refusal says how long to wait; customers do not share a
// bucket; full buckets are forgotten when many customers are tracked.
func TestRateLimiter(t *testing.T) {
	t.Parallel()
	r := newRateLimiter(Limits{OrdersPerSecond: 2, Burst: 3})
	now := time.Unix(1_000, 0)
	for i := range 3 {
		if err := r.allow("a", now); err != nil {
			t.Fatalf("order %d of the burst: %v", i+1, err)
		}
	}
	err := r.allow("a", now)
	var rl *servicekit.RateLimitedError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || rl.RetryAfter != 500*time.Millisecond {
		t.Fatalf("past the burst: %v, want ErrRateLimited with a retry in 500ms", err)
	}
	if err := r.allow("b", now); err != nil {
		t.Errorf("another customer: %v", err)
	}
	if err := r.allow("a", now.Add(500*time.Millisecond)); err != nil {
		t.Errorf("after the wait it said: %v", err)
	}
	for i := range maxTracked {
		_ = r.allow(string(rune(i)), now)
	}
	if err := r.allow("c", now.Add(time.Hour)); err != nil || r.Len() > maxTracked {
		t.Errorf("tracking %d customers (at most %d): %v", r.Len(), maxTracked, err)
	}
}

// TestLimits: unit limits name the line or the order; bad limits are
// refused where they are configured.
func TestLimits(t *testing.T) {
	t.Parallel()
	l := Limits{MaxUnitsPerLine: 10, MaxUnitsPerOrder: 15}.WithDefaults()
	req := func(q ...uint32) *orderv1.CreateOrderRequest {
		r := &orderv1.CreateOrderRequest{}
		for _, n := range q {
			r.Lines = append(r.Lines, &orderv1.OrderLine{Sku: "MUG-001", Quantity: n})
		}
		return r
	}
	for _, tc := range []struct {
		req  *orderv1.CreateOrderRequest
		want string
	}{
		{req(10, 5), ""},
		{req(11), "lines[0] (MUG-001) orders 11 units, more than the 10 a line may"},
		{req(10, 6), "the order has 16 units, more than the 15 an order may"},
	} {
		err := l.checkUnits(tc.req)
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrTooManyUnits) || err.Error() != ErrTooManyUnits.Error()+": "+tc.want) {
			t.Errorf("%v: %v, want %q", tc.req.GetLines(), err, tc.want)
		}
	}
	for _, bad := range []Limits{{OrdersPerSecond: -1}, {Burst: -1}, {MaxUnitsPerLine: 20, MaxUnitsPerOrder: 10}} {
		if bad.Validate() == nil {
			t.Errorf("%+v is valid", bad)
		}
	}
	if l.OrdersPerSecond != DefaultLimits.OrdersPerSecond || l.Burst != DefaultLimits.Burst {
		t.Errorf("defaults: %+v", l)
	}
}
