// Package natsauth gives each shopbus component its own NATS identity, with
// subject permissions, the NATS way (nkeys): a service may publish only the
// events it owns, so a forged event from another identity is refused by
// the server itself, and an anonymous client cannot connect at all.
//
// The identities and what each may do:
//
//	a service  (order, inventory, fraud …: one per service, named after
//	           it) publish its events (the subjects of the events whose
//	           producer it is, Grants.Publish), acks and flow-control
//	           replies on the streams it consumes (and its buckets), dead
//	           letters of those streams and of its own (outbox rows it
//	           cannot publish), and of the JetStream API only what it needs:
//	           stream info, its consumers on the streams it consumes
//	           (create, info, fetch), one message of those streams by
//	           subject (a watchdog's), its groups' KV buckets (read, write,
//	           watch)
//
// A service cannot create, change, purge or delete a stream (a stream's
// configuration can source, transform or republish messages: that would be
// a way around the publish permissions), delete or read a message by
// sequence outside its buckets, or delete a consumer on an event stream.
// The platform identity declares the streams and buckets.
//
//	platform   everything: streams, the DLQ collector, the lag monitor,
//	           the admin services, and the events the DLQ redrives
//
// A service may subscribe to its own inboxes only, "_INBOX.<identity>.>"
// (InboxPrefix; JetStream sends its deliveries, watch messages and API
// replies there), so it reads no other identity's deliveries or replies and
// cannot settle another's messages on a stream it does not consume;
// platform may subscribe to everything.
package natsauth

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Identity names a component's NATS identity.
type Identity string

// The identities of shopbus's components: the platform's, and one per
// service, named after it (Order and Inventory are two).
const (
	Order     Identity = "order"
	Inventory Identity = "inventory"
	Platform  Identity = "platform"
)

// common are the subjects every service publishes to: the JetStream API's
// account and stream info, and stream names (which stream captures a
// subject: the relay asks before it sets aside a row no stream answered
// for).
var common = []string{"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES"}

// InboxPrefix is the prefix of a service identity's inboxes,
// "_INBOX.<identity>": its connection must use it (Keys.Option does;
// nats.CustomInboxPrefix otherwise), as it may subscribe to nothing else.
func InboxPrefix(id Identity) string { return "_INBOX." + string(id) }

// Grants are what a service identity may publish and the JetStream
// resources it uses.
type Grants struct {
	// Publish are the subjects it publishes to: its events' and its own
	// dead letters' ("shopbus.dlq.<its stream>.>"), wildcards allowed.
	Publish []string
	// Streams are the streams it consumes: it may create, read and fetch
	// from consumers on them, and file their dead letters.
	Streams []string
	// Buckets are its consumer groups' KV buckets.
	Buckets []string
}

// Permissions returns what identity may publish and subscribe to, with
// the JetStream resources g of a service.
func Permissions(id Identity, g Grants) *server.Permissions {
	switch id {
	default:
		allow := append(slices.Clone(g.Publish), common...)
		consumerAPI := func(stream string, ops ...string) {
			for _, op := range ops {
				allow = append(allow, "$JS.API.CONSUMER."+op+"."+stream, "$JS.API.CONSUMER."+op+"."+stream+".>")
			}
		}
		// Acks and flow-control replies of its consumers on stream, in
		// both of the server's formats: "$JS.ACK.<stream>.<consumer>.…"
		// and "$JS.ACK.<domain>.<account hash>.<stream>.…".
		settle := func(stream string) {
			for _, pre := range []string{"$JS.ACK.", "$JS.FC."} {
				allow = append(allow, pre+stream+".>", pre+"*.*."+stream+".>")
			}
		}
		for _, st := range g.Streams {
			settle(st)
			// RESET: a key-based partition's new owner restarts it after
			// its last settled event (messaging's takeOver); UNPIN: and
			// unpins the previous owner's client.
			consumerAPI(st, "CREATE", "DURABLE.CREATE", "INFO", "MSG.NEXT", "RESET", "UNPIN")
			// Reading one of its events back (messaging.LastEvent, for a
			// watchdog): what it may consume anyway.
			allow = append(allow, "$JS.API.STREAM.MSG.GET."+st)
			// Its consumers' dead letters (deadletter.Filer), and only
			// theirs: "shopbus.dlq.<stream>.<consumer>.<seq>".
			allow = append(allow, "shopbus.dlq."+st+".>")
		}
		for _, b := range g.Buckets {
			kv := "KV_" + b
			// The bucket's stream, its watchers (ordered consumers) and
			// its reads.
			allow = append(allow, "$KV."+b+".>", "$JS.API.STREAM.MSG.GET."+kv, "$JS.API.DIRECT.GET."+kv, "$JS.API.DIRECT.GET."+kv+".>")
			consumerAPI(kv, "CREATE", "INFO", "MSG.NEXT", "DELETE")
			settle(kv)
		}
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: allow},
			Subscribe: &server.SubjectPermission{Allow: []string{InboxPrefix(id) + ".>"}},
		}
	case Platform:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}},
		}
	}
}

// Keys are the identities' nkeys, kept as seed files in a directory.
type Keys struct {
	dir   string
	mu    sync.Mutex
	pairs map[Identity]nkeys.KeyPair
}

// LoadOrCreate reads the identities' seeds from dir (<identity>.nk) as they
// are needed, creating the ones missing, readable by the owner only; the
// platform's is made at once.
func LoadOrCreate(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	k := &Keys{dir: dir, pairs: map[Identity]nkeys.KeyPair{}}
	if _, err := k.pair(Platform); err != nil {
		return nil, err
	}
	return k, nil
}

// pair returns id's key pair, reading its seed or creating it.
func (k *Keys) pair(id Identity) (nkeys.KeyPair, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kp, ok := k.pairs[id]; ok {
		return kp, nil
	}
	if !validIdentity(id) {
		return nil, fmt.Errorf("natsauth: identity %q: want lower-case letters, digits and -", id)
	}
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
	return kp, nil
}

func validIdentity(id Identity) bool {
	return id != "" && len(id) <= 64 && strings.IndexFunc(string(id), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}) < 0
}

// SeedFile is the file holding identity's seed (for the nats CLI: --nkey).
func (k *Keys) SeedFile(id Identity) string { return filepath.Join(k.dir, string(id)+".nk") }

// Users are the server's users: the platform identity, and each service
// identity of grants with its permissions.
func (k *Keys) Users(grants map[Identity]Grants) ([]*server.NkeyUser, error) {
	var users []*server.NkeyUser
	for _, id := range append([]Identity{Platform}, slices.Sorted(maps.Keys(grants))...) {
		kp, err := k.pair(id)
		if err != nil {
			return nil, err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("natsauth: %s: %w", id, err)
		}
		users = append(users, &server.NkeyUser{Nkey: pub, Permissions: Permissions(id, grants[id])})
	}
	return users, nil
}

// Option is the client option that connects as identity: its nkey and,
// for a service, its inboxes (InboxPrefix).
func (k *Keys) Option(id Identity) (nats.Option, error) {
	kp, err := k.pair(id)
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("natsauth: %s: %w", id, err)
	}
	nkey := nats.Nkey(pub, kp.Sign)
	if id == Platform {
		return nkey, nil
	}
	inbox := nats.CustomInboxPrefix(InboxPrefix(id))
	return func(o *nats.Options) error {
		if err := nkey(o); err != nil {
			return err
		}
		return inbox(o)
	}, nil
}
