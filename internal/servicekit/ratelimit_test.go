package servicekit_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/shopbus/shopbus/internal/servicekit"
)

var t0 = time.Unix(1_000, 0)

// TestKeyedLimiterAllow: a key takes its burst at once, then a token per
// 1/rate, and is told how long to wait; keys do not share a bucket; a key
// never gets more than its burst at once.
func TestKeyedLimiterAllow(t *testing.T) {
	t.Parallel()
	k := servicekit.NewKeyedLimiter(servicekit.KeyedLimits{PerSecond: 2, Burst: 3, MaxKeys: 10})
	if wait, err := k.Allow(t0, "a", 3); wait != 0 || err != nil {
		t.Fatalf("the burst: wait %v, %v", wait, err)
	}
	if wait, err := k.Allow(t0, "a", 1); wait != 500*time.Millisecond || err != nil {
		t.Errorf("past the burst: wait %v, %v; want 500ms", wait, err)
	}
	if wait, err := k.Allow(t0, "b", 1); wait != 0 || err != nil {
		t.Errorf("another key: wait %v, %v", wait, err)
	}
	// The refusal took nothing: after the wait, the token is there.
	if wait, err := k.Allow(t0.Add(500*time.Millisecond), "a", 1); wait != 0 || err != nil {
		t.Errorf("after the wait: wait %v, %v", wait, err)
	}
	if _, err := k.Allow(t0.Add(time.Hour), "a", 4); !errors.Is(err, servicekit.ErrOverBurst) {
		t.Errorf("more than the burst: %v, want ErrOverBurst", err)
	}
}

// TestKeyedLimiterAllowAll: tokens of several keys are taken all or none,
// and the refusal names the key.
func TestKeyedLimiterAllowAll(t *testing.T) {
	t.Parallel()
	k := servicekit.NewKeyedLimiter(servicekit.KeyedLimits{PerSecond: 1, Burst: 2, MaxKeys: 10})
	if _, wait, err := k.AllowAll(t0, map[string]int{"a": 2}); wait != 0 || err != nil {
		t.Fatalf("a's burst: wait %v, %v", wait, err)
	}
	key, wait, err := k.AllowAll(t0, map[string]int{"a": 1, "b": 2})
	if key != "a" || wait != time.Second || err != nil {
		t.Errorf("a over its rate: %q, wait %v, %v; want a, 1s", key, wait, err)
	}
	if _, wait, err := k.AllowAll(t0, map[string]int{"b": 2}); wait != 0 || err != nil {
		t.Errorf("b's tokens were taken by the refused call: wait %v, %v", wait, err)
	}
	if key, _, err := k.AllowAll(t0, map[string]int{"c": 3}); key != "c" || !errors.Is(err, servicekit.ErrOverBurst) {
		t.Errorf("c over its burst: %q, %v; want c, ErrOverBurst", key, err)
	}
}

// TestKeyedLimiterMaxKeys: past MaxKeys, full buckets are forgotten, at
// most once a second; when none is full, a new key is refused, or, with
// ForgetAny, some bucket is forgotten for it.
func TestKeyedLimiterMaxKeys(t *testing.T) {
	t.Parallel()
	for _, forgetAny := range []bool{false, true} {
		k := servicekit.NewKeyedLimiter(servicekit.KeyedLimits{PerSecond: 4, Burst: 1, MaxKeys: 3, ForgetAny: forgetAny})
		for i := range 3 {
			if _, err := k.Allow(t0, strconv.Itoa(i), 1); err != nil {
				t.Fatal(err)
			}
		}
		_, err := k.Allow(t0, "new", 1)
		if forgetAny && err != nil || !forgetAny && !errors.Is(err, servicekit.ErrTooManyKeys) {
			t.Errorf("ForgetAny %v, no bucket full: %v", forgetAny, err)
		}
		if k.Len() > 3 {
			t.Errorf("ForgetAny %v: %d buckets, at most 3", forgetAny, k.Len())
		}
		// Half a second on, every bucket is full again, but the last
		// sweep was at t0: none is forgotten yet.
		if _, err := k.Allow(t0.Add(500*time.Millisecond), "newer", 1); !forgetAny && !errors.Is(err, servicekit.ErrTooManyKeys) {
			t.Errorf("no sweep within a second: %v, want ErrTooManyKeys", err)
		}
		// Two seconds on, the sweep forgets every full bucket.
		if _, err := k.Allow(t0.Add(2*time.Second), "later", 1); err != nil || k.Len() != 1 {
			t.Errorf("ForgetAny %v, all full: %v, %d buckets kept, want 1", forgetAny, err, k.Len())
		}
	}
}
