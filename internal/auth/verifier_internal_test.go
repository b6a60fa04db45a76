package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifiedTokensExpire: a remembered token is answered until it
// expires and not after; the memory never holds more than maxVerified.
func TestVerifiedTokensExpire(t *testing.T) {
	t.Parallel()
	var m verifiedTokens
	now := time.Now()
	d := sha256.Sum256([]byte("a token"))
	p := Principal{Subject: "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"}
	m.put(d, p, now.Add(time.Minute), now)
	if got, ok := m.get(d, now.Add(59*time.Second)); !ok || got != p {
		t.Fatalf("before expiry: %v, %v; want %v", got, ok, p)
	}
	if _, ok := m.get(d, now.Add(time.Minute)); ok {
		t.Fatal("at expiry: still answered")
	}
	if _, ok := m.get(d, now); ok {
		t.Fatal("an expired token is answered again after its expiry was seen")
	}
	for i := range maxVerified + 10 {
		m.put(sha256.Sum256(fmt.Appendf(nil, "token %d", i)), p, now.Add(time.Minute), now)
	}
	if n := len(m.tokens); n > maxVerified {
		t.Fatalf("%d tokens remembered, want at most %d", n, maxVerified)
	}
}

// TestVerifyRemembersOnlyValidTokens: a token that fails verification is
// refused every time (nothing is remembered of it), and a token one byte
// away from a verified one is verified on its own.
func TestVerifyRemembersOnlyValidTokens(t *testing.T) {
	t.Parallel()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	v, err := NewVerifier(pub, Options{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := v.Verify(good); err != nil {
			t.Fatalf("good token: %v", err)
		}
	}
	forged := good[:len(good)-2] + map[bool]string{true: "AA", false: "BB"}[good[len(good)-2:] != "AA"]
	for range 2 {
		if _, err := v.Verify(forged); err == nil {
			t.Fatal("a token with another signature verified")
		}
	}
	if len(v.verified.tokens) != 1 {
		t.Fatalf("%d tokens remembered, want the good one only", len(v.verified.tokens))
	}
}

// BenchmarkVerify: a token's first verification (the signature checked)
// against its next ones (remembered).
func BenchmarkVerify(b *testing.B) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	v, err := NewVerifier(pub, Options{})
	if err != nil {
		b.Fatal(err)
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("signature", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := v.verify(token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("remembered", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
