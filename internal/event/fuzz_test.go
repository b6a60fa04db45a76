package event_test

import (
	"context"
	"os"
	"testing"

	"github.com/shopbus/shopbus/internal/event"
)

// FuzzDecode feeds arbitrary bytes to Decode and Open: they may fail, never
// panic, and an envelope Decode accepts re-encodes to bytes Decode accepts
// again. The seed corpus runs in every `go test`; `make fuzz` explores
// further.
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
	f.Add(append(good[:len(good):len(good)], 0x6a, 0x02, 0xc3, 0x28)) // an unknown field holding invalid UTF-8
	f.Add([]byte{0x0a, 0x02, 0xc3, 0x28})                             // an id that is not UTF-8
	f.Add([]byte{0x0b, 0x0c})                                         // an empty group
	// A group whose end tag names another field, and a Timestamp holding
	// unknown fields.
	f.Add([]byte{0xab, 0x30, 0xac, 0xac, 0x30})
	f.Add([]byte("2$0000000000000000000000000000000000002\r000000000000000\"\x060\xa400\xd80"))
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
