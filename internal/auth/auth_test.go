package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/shopbus/shopbus/internal/auth"
)

const (
	customer = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	device   = "c0ffee00-1234-4abc-8def-0123456789ab"
)

// TestVerify: a token is accepted only when signed by the configured key
// with its algorithm, unexpired, from the configured issuer for the
// configured audience, and naming a subject.
func TestVerify(t *testing.T) {
	t.Parallel()
	opts := auth.Options{Issuer: "shopbus-test", Audience: "shopbus"}
	dir := t.TempDir()
	signer, err := auth.KeyPair(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	own := privateKey(t, filepath.Join(dir, auth.SigningKeyFile))
	v, err := auth.LoadVerifier(filepath.Join(dir, auth.VerificationKeyFile), opts)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	sign := func(m jwt.SigningMethod, k any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": customer, "iss": "shopbus-test", "aud": "shopbus", "exp": now.Add(time.Minute).Unix()}
	}
	with := func(k string, val any) jwt.MapClaims {
		c := good()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	mine, err := signer.Token(auth.Principal{Subject: customer}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := signer.Token(auth.Principal{Subject: "ops", Admin: true}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := signer.Token(auth.Principal{Subject: device, Kind: auth.Device}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	withAll := func(kv map[string]any) jwt.MapClaims {
		c := good()
		for k, val := range kv {
			c[k] = val
		}
		return c
	}
	unsigned, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, tc := range []struct {
		name, token, err string
		want             auth.Principal
	}{
		{"the signer's customer token", mine, "", auth.Principal{Subject: customer}},
		{"the signer's admin token", admin, "", auth.Principal{Subject: "ops", Admin: true}},
		{"the signer's device token", dev, "", auth.Principal{Subject: device, Kind: auth.Device}},
		{"kind user", sign(jwt.SigningMethodEdDSA, own, with("kind", "user")), "", auth.Principal{Subject: customer}},
		{"an unknown kind", sign(jwt.SigningMethodEdDSA, own, with("kind", "robot")), `"kind" claim is "robot"`, auth.Principal{}},
		{"a device with the admin role", sign(jwt.SigningMethodEdDSA, own, withAll(map[string]any{"sub": device, "kind": "device", "roles": []string{"admin"}})), `cannot hold the "admin" role`, auth.Principal{}},
		{"a device whose subject is no UUID", sign(jwt.SigningMethodEdDSA, own, withAll(map[string]any{"sub": "sensor-1", "kind": "device"})), "not a device id", auth.Principal{}},
		{"another key", sign(jwt.SigningMethodEdDSA, key, good()), "verification error", auth.Principal{}},
		{"alg none", unsigned, "signing method none is invalid", auth.Principal{}},
		{"HMAC with the public key as secret", sign(jwt.SigningMethodHS256, []byte("x"), good()), "signing method HS256 is invalid", auth.Principal{}},
		{"expired", sign(jwt.SigningMethodEdDSA, own, with("exp", now.Add(-time.Hour).Unix())), "expired", auth.Principal{}},
		{"no expiry", sign(jwt.SigningMethodEdDSA, own, with("exp", nil)), "exp claim is required", auth.Principal{}},
		{"another issuer", sign(jwt.SigningMethodEdDSA, own, with("iss", "evil")), "invalid issuer", auth.Principal{}},
		{"another audience", sign(jwt.SigningMethodEdDSA, own, with("aud", "other")), "invalid audience", auth.Principal{}},
		{"no subject", sign(jwt.SigningMethodEdDSA, own, with("sub", nil)), "no subject", auth.Principal{}},
		{"garbage", "not.a.token", "malformed", auth.Principal{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(tc.token)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Verify: %v, want %q", err, tc.err)
			}
			if p != tc.want {
				t.Errorf("principal %+v, want %+v", p, tc.want)
			}
		})
	}
}

// privateKey reads a signer's key, to forge tokens it would not mint.
func privateKey(t *testing.T, file string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

// TestJWKS: a JWKS document's keys are chosen by the token's kid; a
// private key in it, or a PEM private key, is refused.
func TestJWKS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, ed, _ := ed25519.GenerateKey(rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &ec.PublicKey, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		{Key: edPub, KeyID: "ed-1", Algorithm: "EdDSA", Use: "sig"},
	}}
	b, _ := json.Marshal(set)
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := auth.LoadVerifier(file, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(m jwt.SigningMethod, kid string, k any) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims{"sub": customer, "exp": time.Now().Add(time.Minute).Unix(), "roles": []string{"admin"}})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"ES256 by its kid", token(jwt.SigningMethodES256, "ec-1", ec), true},
		{"EdDSA by its kid", token(jwt.SigningMethodEdDSA, "ed-1", ed), true},
		{"EdDSA under the EC key's kid", token(jwt.SigningMethodEdDSA, "ec-1", ed), false},
		{"an unknown kid", token(jwt.SigningMethodEdDSA, "ed-2", ed), false},
	} {
		p, err := v.Verify(tc.token)
		if tc.ok != (err == nil) || tc.ok && p != (auth.Principal{Subject: customer, Admin: true}) {
			t.Errorf("%s: %+v, %v", tc.name, p, err)
		}
	}
	private, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ed, KeyID: "ed-1"}}})
	if err := os.WriteFile(file, private, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadVerifier(file, auth.Options{}); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("a JWKS with a private key: %v", err)
	}
	if _, err := auth.LoadVerifier(filepath.Join(mustKeyPair(t), auth.SigningKeyFile), auth.Options{}); err == nil || !strings.Contains(err.Error(), "never the private key") {
		t.Errorf("a PEM private key as the verification key: %v", err)
	}
}

func mustKeyPair(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := auth.KeyPair(dir, auth.Options{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestActsFor: a customer acts for itself only (however its id is cased);
// an admin for anyone; a token naming no customer for no one.
func TestActsFor(t *testing.T) {
	t.Parallel()
	me := auth.Principal{Subject: strings.ToUpper(customer)}
	if !me.ActsFor(customer) || me.ActsFor("0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b") || me.ActsFor("") {
		t.Error("a customer's ActsFor")
	}
	if c, err := me.Customer(); err != nil || c != customer {
		t.Errorf("Customer() = %q, %v", c, err)
	}
	ops := auth.Principal{Subject: "ops"}
	if _, err := ops.Customer(); err == nil || ops.ActsFor("ops") {
		t.Error("a non-UUID subject is a customer")
	}
	if !(auth.Principal{Subject: "ops", Admin: true}).ActsFor(customer) {
		t.Error("an admin does not act for a customer")
	}
}

// TestDeviceKind: a device's principal acts for its own device only (however
// its id is cased) and for no customer, not even the one of its id; a
// user's acts for no device, not even the one of its id; the admin role
// acts for any device.
func TestDeviceKind(t *testing.T) {
	t.Parallel()
	dev := auth.Principal{Subject: strings.ToUpper(device), Kind: auth.Device}
	if !dev.ActsForDevice(device) || dev.ActsForDevice(customer) || dev.ActsForDevice("") {
		t.Error("a device's ActsForDevice")
	}
	if d, err := dev.Device(); err != nil || d != device {
		t.Errorf("Device() = %q, %v", d, err)
	}
	if _, err := dev.Customer(); !errors.Is(err, auth.ErrDeviceToken) || dev.ActsFor(device) {
		t.Errorf("a device is a customer: Customer() %v, ActsFor(its id) %v", err, dev.ActsFor(device))
	}
	user := auth.Principal{Subject: device}
	if _, err := user.Device(); !errors.Is(err, auth.ErrNotADevice) || user.ActsForDevice(device) {
		t.Errorf("a user is a device: Device() %v", err)
	}
	if !(auth.Principal{Subject: "ops", Admin: true}).ActsForDevice(device) {
		t.Error("an admin does not act for a device")
	}
	if k, err := auth.ParseKind("device"); err != nil || k != auth.Device || k.String() != "device" {
		t.Errorf(`ParseKind("device") = %q, %v`, k, err)
	}
	if k, err := auth.ParseKind(""); err != nil || k != auth.User || k.String() != "user" {
		t.Errorf(`ParseKind("") = %q, %v`, k, err)
	}
}

// TestSignerRefusesAdminDevices: the Signer mints no device token with the
// admin role, nor one naming no device id, nor one of an unknown kind.
func TestSignerRefusesAdminDevices(t *testing.T) {
	t.Parallel()
	signer, err := auth.KeyPair(t.TempDir(), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    auth.Principal
		want string
	}{
		{auth.Principal{Subject: device, Kind: auth.Device, Admin: true}, `cannot hold the "admin" role`},
		{auth.Principal{Subject: "sensor-1", Kind: auth.Device}, "not a device id"},
		{auth.Principal{Subject: device, Kind: "robot"}, `kind "robot"`},
	} {
		if tok, err := signer.Token(tc.p, time.Minute); err == nil || !strings.Contains(err.Error(), tc.want) || tok != "" {
			t.Errorf("Token(%+v): %v, want an error saying %q", tc.p, err, tc.want)
		}
	}
}

// TestInterceptorKinds: through the interceptor, a device's token reaches
// a device procedure only (elsewhere PermissionDenied), and a device token
// with the admin role is Unauthenticated, saying why.
func TestInterceptorKinds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	signer, err := auth.KeyPair(dir, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := signer.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	const deviceProc, userProc = "/shopbus.telemetry.v1.TelemetryService/IngestBatch", "/shopbus.order.v1.OrderService/CreateOrder"
	i := auth.Interceptor(auth.Config{Verifier: v}, func(string) bool { return false },
		auth.DeviceProcedures(func(p string) bool { return p == deviceProc }))
	tok := func(p auth.Principal) string {
		s, err := signer.Token(p, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	adminDevice, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": device, "kind": "device", "roles": []string{"admin"},
		"exp": time.Now().Add(time.Minute).Unix()}).SignedString(privateKey(t, filepath.Join(dir, auth.SigningKeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	dev := tok(auth.Principal{Subject: device, Kind: auth.Device})
	for _, tc := range []struct {
		name, procedure, token string
		want                   connect.Code
		says                   string
	}{
		{"a device on its procedure", deviceProc, dev, 0, ""},
		{"a device on a user's procedure", userProc, dev, connect.CodePermissionDenied, "a device only ingests its own readings"},
		{"a user on a user's procedure", userProc, tok(auth.Principal{Subject: customer}), 0, ""},
		{"a user on a device procedure (its handler decides)", deviceProc, tok(auth.Principal{Subject: customer}), 0, ""},
		{"a device with the admin role", deviceProc, adminDevice, connect.CodeUnauthenticated, `cannot hold the "admin" role`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got auth.Principal
			h := i.WrapUnary(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
				got, _ = auth.FromContext(ctx)
				return nil, nil
			})
			_, err := h(context.Background(), request{procedure: tc.procedure, header: http.Header{"Authorization": {"Bearer " + tc.token}}})
			if code := connect.CodeOf(err); tc.want == 0 && err != nil || tc.want != 0 && (code != tc.want || !strings.Contains(err.Error(), tc.says)) {
				t.Fatalf("%v, want %v saying %q", err, tc.want, tc.says)
			}
			if tc.want == 0 && got.Subject == "" {
				t.Error("the handler found no principal")
			}
		})
	}
}

// request is a server-side unary request of a procedure, with header.
type request struct {
	connect.AnyRequest
	procedure string
	header    http.Header
}

func (r request) Spec() connect.Spec  { return connect.Spec{Procedure: r.procedure} }
func (r request) Header() http.Header { return r.header }
