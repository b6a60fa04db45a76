package servicekit_test

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shopbus/shopbus/internal/servicekit"
)

// TestRequestHash: the same request has the same hash, another request
// another.
func TestRequestHash(t *testing.T) {
	t.Parallel()
	hash := func(d time.Duration) []byte {
		t.Helper()
		h, err := servicekit.RequestHash(durationpb.New(d))
		if err != nil || len(h) != 32 {
			t.Fatalf("hash of %v: %x, %v", d, h, err)
		}
		return h
	}
	if !bytes.Equal(hash(time.Second), hash(time.Second)) || bytes.Equal(hash(time.Second), hash(2*time.Second)) {
		t.Error("the hash does not tell requests apart")
	}
}
