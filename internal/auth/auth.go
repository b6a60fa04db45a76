// Package auth authenticates the callers of shopbus's RPCs and says what
// they may do. A caller sends "Authorization: Bearer <JWT>"; the token is
// verified against configured keys (a PEM public key or a JWKS file), and
// becomes a Principal: the customer it names (the subject) and whether it
// holds the admin role. Connect handlers read it with FromContext; the
// customer an order belongs to comes from it, never from the request.
//
// Interceptor enforces the rules every procedure shares: no token, a bad
// one or an expired one is Unauthenticated; an admin procedure without the
// admin role is PermissionDenied. What a customer may see of the orders is
// the order service's rule (its handler), on the Principal found here.
//
// Signer mints tokens from a private key: shopbus dev makes a key pair and
// prints a demo customer's token and an admin token with it.
package auth

import (
	"context"
	"errors"

	"github.com/google/uuid"
)

// AdminRole is the role, in a token's "roles" claim, of the admin
// procedures (stock, dead letters, consumer groups, lag) and of acting for
// any customer.
const AdminRole = "admin"

// Principal is an authenticated caller.
type Principal struct {
	// Subject is the token's subject: for a customer, the customer id.
	Subject string
	// Admin reports the admin role.
	Admin bool
}

// ErrNotACustomer means a token without the admin role names no customer:
// its subject is not a customer id (a UUID).
var ErrNotACustomer = errors.New("the token's subject is not a customer id (a UUID)")

// Customer returns the customer the principal is: its subject as a
// canonical UUID.
func (p Principal) Customer() (string, error) {
	id, err := uuid.Parse(p.Subject)
	if err != nil {
		return "", ErrNotACustomer
	}
	return id.String(), nil
}

// ActsFor reports whether p may see and act on the data of customer: its
// own, or anyone's with the admin role.
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
