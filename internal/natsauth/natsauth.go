// Package natsauth gives each shopbus component its own NATS identity, with
// subject permissions, the NATS way (nkeys): a service may publish only the
// events it owns, so a forged event from another identity is refused by
// the server itself, and an anonymous client cannot connect at all.
//
// The identities and what each may do:
//
//	order      publish ecommerce.order.> (its events), the JetStream API,
//	           acks, its consumer groups' KV buckets and the DLQ
//	inventory  the same with ecommerce.inventory.>
//	platform   everything: streams, the DLQ collector, the lag monitor,
//	           the admin services, and the events the DLQ redrives
//
// Each may subscribe to its inboxes (JetStream delivers pull and watch
// messages there); platform may subscribe to everything.
package natsauth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Identity names a component's NATS identity.
type Identity string

// The identities of shopbus's components.
const (
	Order     Identity = "order"
	Inventory Identity = "inventory"
	Platform  Identity = "platform"
)

// Identities lists every identity.
var Identities = []Identity{Order, Inventory, Platform}

// common are the subjects every identity publishes to: the JetStream API,
// acks and flow control, and the dead-letter stream (deadletter.Filer).
var common = []string{"$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "shopbus.dlq.>"}

// Permissions returns what identity may publish and subscribe to;
// buckets are the KV buckets of its consumer groups.
func Permissions(id Identity, buckets []string) *server.Permissions {
	switch id {
	case Order, Inventory:
		allow := append([]string{"ecommerce." + string(id) + ".>"}, common...)
		for _, b := range buckets {
			allow = append(allow, "$KV."+b+".>")
		}
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: allow},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}
	default:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}},
		}
	}
}

// Keys are the identities' nkeys, kept as seed files in a directory.
type Keys struct {
	dir   string
	pairs map[Identity]nkeys.KeyPair
}

// LoadOrCreate reads the identities' seeds from dir (<identity>.nk), and
// creates the ones missing, readable by the owner only.
func LoadOrCreate(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	k := &Keys{dir: dir, pairs: map[Identity]nkeys.KeyPair{}}
	for _, id := range Identities {
		path := k.SeedFile(id)
		seed, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return nil, fmt.Errorf("natsauth: %s: %w", id, err)
			}
			if seed, err = kp.Seed(); err != nil {
				return nil, fmt.Errorf("natsauth: %s: %w", id, err)
			}
			if err := os.WriteFile(path, seed, 0o600); err != nil {
				return nil, fmt.Errorf("natsauth: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("natsauth: %w", err)
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			return nil, fmt.Errorf("natsauth: %s: the seed in %s: %w", id, path, err)
		}
		k.pairs[id] = kp
	}
	return k, nil
}

// SeedFile is the file holding identity's seed (for the nats CLI: --nkey).
func (k *Keys) SeedFile(id Identity) string { return filepath.Join(k.dir, string(id)+".nk") }

// Users are the server's users: each identity's public key and
// permissions; buckets are each identity's consumer group buckets.
func (k *Keys) Users(buckets map[Identity][]string) ([]*server.NkeyUser, error) {
	var users []*server.NkeyUser
	for _, id := range Identities {
		pub, err := k.pairs[id].PublicKey()
		if err != nil {
			return nil, fmt.Errorf("natsauth: %s: %w", id, err)
		}
		users = append(users, &server.NkeyUser{Nkey: pub, Permissions: Permissions(id, buckets[id])})
	}
	return users, nil
}

// Option is the client option that connects as identity.
func (k *Keys) Option(id Identity) (nats.Option, error) {
	kp, ok := k.pairs[id]
	if !ok {
		return nil, fmt.Errorf("natsauth: unknown identity %q", id)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("natsauth: %s: %w", id, err)
	}
	return nats.Nkey(pub, kp.Sign), nil
}
