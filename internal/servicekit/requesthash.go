package servicekit

import (
	"crypto/sha256"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// RequestHash fingerprints req (SHA-256 of its deterministic encoding),
// to tell a retry from a different request under the same idempotency key
// or id. Canonicalize req first where one thing has several spellings (a
// UUID's case).
func RequestHash(req proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("hash request: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}
