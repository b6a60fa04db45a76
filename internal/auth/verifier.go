package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// Options are the claims a token must carry besides a subject and an
// expiry time.
type Options struct {
	// Issuer, when set, must be the token's "iss".
	Issuer string
	// Audience, when set, must be among the token's "aud".
	Audience string
}

// Leeway is the clock skew tolerated on a token's expiry and not-before
// times.
const Leeway = 30 * time.Second

// ErrNoKey means a token names a key the verifier does not have.
var ErrNoKey = errors.New("no verification key for the token")

// Verifier verifies bearer tokens (JWT, signed with a public-key
// algorithm: EdDSA, ES256/384/512, RS256/384/512 or PS256/384/512). A
// shared HMAC secret is not accepted: whoever verifies could then mint.
type Verifier struct {
	keys    map[string]crypto.PublicKey // by key id; "" when there is one key without id
	parser  *jwt.Parser
	methods []string
	// verified remembers the tokens verified lately, so that a client's
	// next call with the same token costs a hash, not a signature check.
	verified verifiedTokens
}

// NewVerifier returns a verifier of tokens signed by key (an
// ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey), whatever key id
// they name.
func NewVerifier(key crypto.PublicKey, opts Options) (*Verifier, error) {
	return newVerifier(map[string]crypto.PublicKey{"": key}, opts)
}

// LoadVerifier returns a verifier of the keys in file: a PEM public key
// ("PUBLIC KEY", or a certificate) or a JWKS document (JSON, keys chosen by
// the token's "kid").
func LoadVerifier(file string, opts Options) (*Verifier, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("auth: verification key: %w", err)
	}
	keys, err := parseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("auth: verification key %s: %w", file, err)
	}
	return newVerifier(keys, opts)
}

func newVerifier(keys map[string]crypto.PublicKey, opts Options) (*Verifier, error) {
	v := &Verifier{keys: keys}
	for kid, k := range keys {
		m, err := methodsOf(k)
		if err != nil {
			return nil, fmt.Errorf("auth: key %q: %w", kid, err)
		}
		for _, name := range m {
			if !slices.Contains(v.methods, name) {
				v.methods = append(v.methods, name)
			}
		}
	}
	if len(v.methods) == 0 {
		return nil, errors.New("auth: no verification key")
	}
	popts := []jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired(), jwt.WithLeeway(Leeway)}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	v.parser = jwt.NewParser(popts...)
	return v, nil
}

// claims are the token claims shopbus reads.
type claims struct {
	jwt.RegisteredClaims
	// Roles are the caller's roles; AdminRole is the one shopbus knows.
	Roles []string `json:"roles,omitempty"`
	// Kind is what the subject is (KindClaim): none for a user, "device"
	// for a device.
	Kind string `json:"kind,omitempty"`
}

// Verify checks token's signature, algorithm, expiry (required), issuer and
// audience, and returns the caller it names. Its "kind" claim (KindClaim)
// must be absent (a user), "user" or "device"; a device's token must name
// a device id (a UUID) and must not hold the admin role.
//
// A token verified before is not checked again until it expires: the
// verifier's keys and rules never change, so neither does the answer.
func (v *Verifier) Verify(token string) (Principal, error) {
	now := time.Now()
	digest := sha256.Sum256([]byte(token))
	if p, ok := v.verified.get(digest, now); ok {
		return p, nil
	}
	p, expires, err := v.verify(token)
	if err != nil {
		return Principal{}, err
	}
	v.verified.put(digest, p, expires, now)
	return p, nil
}

// verify is Verify without the memory of verified tokens: it also returns
// when the token expires (leeway included).
func (v *Verifier) verify(token string) (Principal, time.Time, error) {
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, v.key)
	if err != nil {
		return Principal{}, time.Time{}, err
	}
	if c.Subject == "" {
		return Principal{}, time.Time{}, errors.New("the token has no subject")
	}
	kind, err := ParseKind(c.Kind)
	if err != nil {
		return Principal{}, time.Time{}, err
	}
	p := Principal{Subject: c.Subject, Kind: kind, Admin: slices.Contains(c.Roles, AdminRole)}
	if err := checkKind(p); err != nil {
		return Principal{}, time.Time{}, err
	}
	// The parser required an expiry and checked the not-before time.
	return p, c.ExpiresAt.Add(Leeway), nil
}

// checkKind refuses a principal no token may name: a device with the admin
// role, or a device whose subject is not a device id (a UUID).
func checkKind(p Principal) error {
	switch p.Kind {
	case User:
		return nil
	case Device:
		if p.Admin {
			return ErrAdminDevice
		}
		if _, err := p.Device(); err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("kind %q: want %q, or none for a user", string(p.Kind), Device)
}

// key finds the key of a token: by its "kid", or the only key.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	if k, ok := v.keys[""]; ok && len(v.keys) == 1 {
		return k, nil
	}
	return nil, fmt.Errorf("%w (kid %q)", ErrNoKey, kid)
}

// methodsOf lists the signing algorithms a key verifies.
func methodsOf(k crypto.PublicKey) ([]string, error) {
	switch k := k.(type) {
	case ed25519.PublicKey:
		return []string{jwt.SigningMethodEdDSA.Alg()}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{jwt.SigningMethodES256.Alg()}, nil
		case elliptic.P384():
			return []string{jwt.SigningMethodES384.Alg()}, nil
		case elliptic.P521():
			return []string{jwt.SigningMethodES512.Alg()}, nil
		}
		return nil, errors.New("an ECDSA key on a curve JWT does not use")
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("an RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	}
	return nil, fmt.Errorf("a %T: want an Ed25519, ECDSA or RSA public key", k)
}

// parseKeys reads a PEM public key or certificate, or a JWKS document.
func parseKeys(b []byte) (map[string]crypto.PublicKey, error) {
	if block, _ := pem.Decode(b); block != nil {
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			return map[string]crypto.PublicKey{"": k}, nil
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			return map[string]crypto.PublicKey{"": c.PublicKey}, nil
		}
		return nil, fmt.Errorf("a PEM %q block: want PUBLIC KEY or CERTIFICATE (never the private key)", block.Type)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("neither PEM nor a JWKS document: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("JWKS key %d (kid %q) is a private key: publish only public keys", i, k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if _, dup := keys[k.KeyID]; dup {
			return nil, fmt.Errorf("JWKS: two keys with kid %q", k.KeyID)
		}
		keys[k.KeyID] = k.Key
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS: no signing key")
	}
	return keys, nil
}

// maxVerified bounds the tokens a Verifier remembers: about 100 bytes
// each. When it is reached, the expired ones are forgotten, and if that is
// not enough, all of them.
const maxVerified = 10_000

// verifiedTokens remembers the principals of tokens verified lately, by
// the SHA-256 of the token (the tokens themselves are not kept), until the
// tokens expire. It is safe for concurrent use.
type verifiedTokens struct {
	mu     sync.Mutex
	tokens map[[sha256.Size]byte]verifiedToken
}

// verifiedToken is a token's principal and when the token stops being
// valid.
type verifiedToken struct {
	p       Principal
	expires time.Time
}

// get returns the principal of the token whose digest is d, if it was
// verified and has not expired at now.
func (m *verifiedTokens) get(d [sha256.Size]byte, now time.Time) (Principal, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[d]
	if !ok {
		return Principal{}, false
	}
	if !now.Before(t.expires) {
		delete(m.tokens, d)
		return Principal{}, false
	}
	return t.p, true
}

// put remembers that the token whose digest is d names p until expires.
func (m *verifiedTokens) put(d [sha256.Size]byte, p Principal, expires, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokens == nil {
		m.tokens = map[[sha256.Size]byte]verifiedToken{}
	}
	if len(m.tokens) >= maxVerified {
		for k, t := range m.tokens {
			if !now.Before(t.expires) {
				delete(m.tokens, k)
			}
		}
		if len(m.tokens) >= maxVerified {
			clear(m.tokens)
		}
	}
	m.tokens[d] = verifiedToken{p: p, expires: expires}
}
