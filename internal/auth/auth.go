// Package auth authenticates the callers of shopbus's RPCs and says what
// they may do. A caller sends "Authorization: Bearer <JWT>"; the token is
// verified against configured keys (a PEM public key or a JWKS file), and
// becomes a Principal: what it names (the subject), what kind of subject
// that is (the "kind" claim: a user, the default, or a device), and whether
// it holds the admin role. Connect handlers read it with FromContext; the
// customer an order belongs to comes from it, never from the request.
//
// A user's token (no "kind" claim) names a customer or user; a device's
// token ("kind": "device") names a device and may only ingest that
// device's readings: it is never a user (Customer refuses it, and
// Interceptor refuses it on every procedure but the device procedures),
// and it cannot hold the admin role.
//
// Interceptor enforces the rules every procedure shares: no token, a bad
// one or an expired one is Unauthenticated; an admin procedure without the
// admin role, or a device's token on a procedure that is not a device's,
// is PermissionDenied. What a customer may see of the orders is the order
// service's rule (its handler), on the Principal found here.
//
// Signer mints tokens from a private key: shopbus dev makes a key pair and
// mints a demo customer's token, a demo device's and an admin token with it.
package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// AdminRole is the role, in a token's "roles" claim, of the admin
// procedures (stock, dead letters, consumer groups, lag) and of acting for
// any customer.
const AdminRole = "admin"

// KindClaim is the token claim naming what its subject is (a Kind). A
// token without it is a user's, as every token was before devices had
// their own kind.
const KindClaim = "kind"

// Kind is what a token's subject is: a user (the zero Kind) or a device.
type Kind string

// The kinds of subject a token names.
const (
	// User is a customer or user: the subject is its id. A token without
	// the "kind" claim is a user's; "kind": "user" says so explicitly.
	User Kind = ""
	// Device is an IoT device: the subject is its device id (a UUID), and
	// the token may only ingest that device's readings.
	Device Kind = "device"
)

// String returns the kind as the "kind" claim spells it ("user" for User).
func (k Kind) String() string {
	if k == User {
		return "user"
	}
	return string(k)
}

// ParseKind returns the Kind a "kind" claim names: "" or "user" is User,
// "device" Device; anything else is an error naming the claim.
func ParseKind(claim string) (Kind, error) {
	switch claim {
	case "", "user":
		return User, nil
	case string(Device):
		return Device, nil
	}
	return User, fmt.Errorf("the token's %q claim is %q: want %q, or none for a user", KindClaim, claim, Device)
}

// Principal is an authenticated caller.
type Principal struct {
	// Subject is the token's subject: for a customer, the customer id;
	// for a device, the device id.
	Subject string
	// Kind is what the subject is: a user (the zero Kind) or a device.
	Kind Kind
	// Admin reports the admin role (never a device's).
	Admin bool
}

// ErrNotACustomer means a user's token without the admin role names no
// customer: its subject is not a customer id (a UUID).
var ErrNotACustomer = errors.New("the token's subject is not a customer id (a UUID)")

// ErrDeviceToken means a device's token was used where a user acts: a
// device is no customer or user, whatever its id.
var ErrDeviceToken = errors.New(`the bearer token is a device's ("kind": "device"): a device only ingests its own readings and acts for no user`)

// ErrNotADevice means a user's token was used where a device acts.
var ErrNotADevice = errors.New(`a user's token cannot ingest as a device: send the device's own token ("kind": "device"), or one with the admin role (a device gateway)`)

// ErrAdminDevice means a token, or a Principal to mint one for, is a
// device's with the admin role, which no device holds.
var ErrAdminDevice = fmt.Errorf(`a device's token ("kind": "device") cannot hold the %q role`, AdminRole)

// IsDevice reports whether p is a device.
func (p Principal) IsDevice() bool { return p.Kind == Device }

// Customer returns the customer (or user) the principal is: its subject as
// a canonical UUID. A device's principal is ErrDeviceToken, a subject that
// is not a UUID ErrNotACustomer.
func (p Principal) Customer() (string, error) {
	if p.IsDevice() {
		return "", ErrDeviceToken
	}
	id, err := uuid.Parse(p.Subject)
	if err != nil {
		return "", ErrNotACustomer
	}
	return id.String(), nil
}

// Device returns the device the principal is: its subject as a canonical
// UUID. A user's principal is ErrNotADevice.
func (p Principal) Device() (string, error) {
	if !p.IsDevice() {
		return "", ErrNotADevice
	}
	id, err := uuid.Parse(p.Subject)
	if err != nil {
		return "", fmt.Errorf("the device token's subject %q is not a device id (a UUID)", p.Subject)
	}
	return id.String(), nil
}

// ActsForDevice reports whether p may send the readings of device: a
// device its own, the admin role (a device gateway) any device's, a user's
// token none.
func (p Principal) ActsForDevice(device string) bool {
	if p.Admin {
		return true
	}
	own, err := p.Device()
	if err != nil {
		return false
	}
	id, err := uuid.Parse(device)
	return err == nil && id.String() == own
}

// ActsFor reports whether p may see and act on the data of customer: its
// own, or anyone's with the admin role; a device acts for no customer.
func (p Principal) ActsFor(customer string) bool {
	if p.Admin {
		return true
	}
	own, err := p.Customer()
	if err != nil {
		return false
	}
	id, err := uuid.Parse(customer)
	return err == nil && id.String() == own
}

type principalKey struct{}

type tokenKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller that Interceptor authenticated, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// withToken returns ctx carrying the caller's bearer token, which
// ForwardToken sends on to the services behind a gateway.
func withToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// tokenFrom returns the caller's bearer token carried by ctx.
func tokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}
