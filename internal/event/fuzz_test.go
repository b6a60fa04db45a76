package event_test

import (
	"context"
	"os"
	"testing"

	"github.com/shopbus/shopbus/internal/event"
)

// FuzzDecode feeds arbitrary bytes to Decode and Open: they may fail, never
// panic, and an envelope they accept re-encodes. The seed corpus runs in
// every `go test`; `make fuzz` explores further.
func FuzzDecode(f *testing.F) {
	env, err := event.New(context.Background(), orderCreated(), event.WithSource("shopbus/order"))
	if err != nil {
		f.Fatal(err)
	}
	good, err := event.Encode(env)
	if err != nil {
		f.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/order.created.v1.first.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(golden)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := event.Decode(b)
		if err != nil {
			return
		}
		again, err := event.Encode(env)
		if err != nil {
			t.Fatalf("Decode accepted an envelope that Encode refuses: %v", err)
		}
		if _, err := event.Decode(again); err != nil {
			t.Errorf("an accepted envelope no longer decodes after re-encoding: %v", err)
		}
		_, _, _ = event.Open(env)
	})
}
