package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signer mints tokens with an Ed25519 private key: shopbus dev's demo
// tokens (a customer's, a device's, an admin's), and a benchmark's
// customers. In production an identity provider
// mints them and shopbus only verifies.
type Signer struct {
	key  ed25519.PrivateKey
	opts Options
}

// Key files of a signer's directory (KeyPair).
const (
	// SigningKeyFile is the private key (PEM PKCS #8), mode 0600.
	SigningKeyFile = "jwt-signing-key.pem"
	// VerificationKeyFile is its public key (PEM), what --jwt-key takes.
	VerificationKeyFile = "jwt-verification-key.pem"
)

// KeyPair loads the signing key in dir, or makes one (with its public key
// beside it) when there is none, and returns a Signer of tokens with opts'
// issuer and audience.
func KeyPair(dir string, opts Options) (*Signer, error) {
	s, err := LoadSigner(filepath.Join(dir, SigningKeyFile), opts)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: generate a signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("auth: verification key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	// The public key first: a signing key without it is never left behind.
	if err := os.WriteFile(filepath.Join(dir, VerificationKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, SigningKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &Signer{key: key, opts: opts}, nil
}

// LoadSigner reads an Ed25519 private key (PEM PKCS #8) from file.
func LoadSigner(file string, opts Options) (*Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("auth: signing key %s: want a PEM PRIVATE KEY block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key %s: %w", file, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: signing key %s: a %T, want Ed25519", file, k)
	}
	return &Signer{key: key, opts: opts}, nil
}

// Verifier returns the verifier of the signer's tokens.
func (s *Signer) Verifier() (*Verifier, error) {
	return NewVerifier(s.key.Public(), s.opts)
}

// Token returns a token for p valid for ttl. A device's (p.Kind Device)
// carries "kind": "device" and must name a device id (a UUID) and not the
// admin role; a user's carries no "kind" claim, as before devices had one.
func (s *Signer) Token(p Principal, ttl time.Duration) (string, error) {
	if err := checkKind(p); err != nil {
		return "", fmt.Errorf("auth: mint a token: %w", err)
	}
	now := time.Now()
	c := claims{Kind: string(p.Kind), RegisteredClaims: jwt.RegisteredClaims{
		Subject: p.Subject, Issuer: s.opts.Issuer,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if s.opts.Audience != "" {
		c.Audience = jwt.ClaimStrings{s.opts.Audience}
	}
	if p.Admin {
		c.Roles = []string{AdminRole}
	}
	t, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("auth: sign a token: %w", err)
	}
	return t, nil
}
