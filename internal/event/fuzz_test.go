package event_test

import (
	"context"
	"os"
	"testing"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	validtestv1 "github.com/shopbus/shopbus/gen/go/shopbus/validtest/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// FuzzDecode feeds arbitrary bytes to Decode and Open: they may fail, never
// panic, and an envelope they accept re-encodes. The same bytes, read as the
// envelope, as every event and as validtest.Rules (every scalar kind), must
// decode as protobuf-go decodes them, and re-encode as protobuf-go writes
// what it read. The seed corpus runs in every `go test`; `make fuzz` explores
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
	// Found by the fuzzer where vtprotobuf alone reads otherwise than
	// protobuf-go: a group whose end tag names another field, and a
	// Timestamp holding unknown fields (vtprotobuf drops them).
	f.Add([]byte{0xab, 0x30, 0xac, 0xac, 0x30})
	f.Add([]byte("2$0000000000000000000000000000000000002\r000000000000000\"\x060\xa400\xd80"))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeAgrees(t, (&eventv1.Envelope{}).ProtoReflect().Type(), b)
		for _, spec := range event.Catalog() {
			decodeAgrees(t, spec.Message, b)
		}
		decodeAgrees(t, (&validtestv1.Rules{}).ProtoReflect().Type(), b) // every scalar kind
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
