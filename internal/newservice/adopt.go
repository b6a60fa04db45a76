package newservice

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shopbus/shopbus/internal/event"
)

// Adopt generates a service for a contract that exists already
// (event-contracts/<domain>/<context>, its events in the catalog): the RPC
// API, the service package on servicekit (Publish, which writes any of its
// events through the outbox; a consumer of all of them that keeps a read
// model of activity per partition key; an RPC that reads it), its migration
// and test (each event's valid and invalid examples through the whole
// path), and the same wiring as Generate. The contract gains nothing but
// its producer: each event that names none is declared produced by the new
// service, so that its NATS identity may publish it. The domain's own
// use cases are then written beside the generated ones.
func Adopt(root, spec string) ([]string, error) {
	n, err := parse(spec)
	if err != nil {
		return nil, err
	}
	contract := "event-contracts/" + n.Domain + "/" + n.Context
	if _, err := os.Stat(filepath.Join(root, contract)); err != nil {
		return nil, fmt.Errorf("%w: %s has no contract to adopt (generate one without --adopt)", ErrBadName, contract)
	}
	for _, dir := range []string{"services/" + n.Context, "proto/shopbus/" + n.Context} {
		if _, err := os.Stat(filepath.Join(root, dir)); err == nil {
			return nil, fmt.Errorf("%w: %s", ErrExists, dir)
		}
	}
	producer := "shopbus/" + n.Context
	extra := map[string]func(string) (string, error){}
	var keys []string
	for _, s := range event.Catalog() {
		if s.Domain != n.Domain || s.Context != n.Context {
			continue
		}
		if s.Producer != "" && s.Producer != producer {
			return nil, fmt.Errorf("%w: %s is produced by %s, not %s", ErrExists, s, s.Producer, producer)
		}
		dir := fmt.Sprintf("%s.v%d", s.Name, s.Version)
		valid, invalid, err := examples(filepath.Join(root, contract, "examples", dir))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		n.Events = append(n.Events, adopted{Name: s.Name, Version: s.Version, Subject: n.Domain + "." + s.Name,
			Valid: dir + "/" + valid, Invalid: dir + "/" + invalid})
		keys = append(keys, string(s.KeyField.Name()))
		if s.Producer == "" {
			path := contract + "/" + s.Message.Descriptor().ParentFile().Path()[len(n.Domain+"/"+n.Context+"/"):]
			prev := extra[path]
			name := s.Name
			extra[path] = func(old string) (string, error) {
				if prev != nil {
					var err error
					if old, err = prev(old); err != nil {
						return "", err
					}
				}
				return declareProducer(old, name, producer)
			}
		}
	}
	if len(n.Events) == 0 {
		return nil, fmt.Errorf("%w: the catalog has no event of %s/%s (run make generate, and build shopbus again)", ErrBadName, n.Domain, n.Context)
	}
	n.Keys = strings.Join(slices.Compact(slices.Sorted(slices.Values(keys))), ", ")
	n.Consumer = "EventsConsumer"
	n.Describe = "Get" + n.Type + "Activity (admin), its read model"
	created := map[string]string{
		"proto/shopbus/{{.Context}}/v1/{{.Context}}_service.proto": "adopt-service.proto.tmpl",
		"services/{{.Context}}/{{.Context}}.go":                    "adopt-service.go.tmpl",
		"services/{{.Context}}/publish.go":                         "adopt-publish.go.tmpl",
		"services/{{.Context}}/apply_{{.Context}}_events.go":       "adopt-apply.go.tmpl",
		"services/{{.Context}}/get_{{.Context}}_activity.go":       "adopt-get.go.tmpl",
		"services/{{.Context}}/handler.go":                         "adopt-handler.go.tmpl",
		"services/{{.Context}}/migrations/001_{{.Context}}.sql":    "adopt-migration.sql.tmpl",
		"services/{{.Context}}/{{.Context}}_test.go":               "adopt-service_test.go.tmpl",
	}
	// The contract is in the catalog already; it changes no version.
	wiring := slices.DeleteFunc(slices.Clone(edits), func(e edit) bool {
		return e.path == "internal/event/catalog.go" || e.path == "event-contracts/CHANGELOG.md"
	})
	return write(root, n, created, wiring, extra)
}

// examples returns the first valid and the first invalid example in dir.
func examples(dir string) (valid, invalid string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("its examples: %w", err)
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case valid == "" && strings.HasPrefix(name, "valid-") && strings.HasSuffix(name, ".json"):
			valid = name
		case invalid == "" && strings.HasPrefix(name, "invalid-") && strings.HasSuffix(name, ".json"):
			invalid = name
		}
	}
	if valid == "" || invalid == "" {
		return "", "", fmt.Errorf("%s needs a valid-*.json and an invalid-*.json example", dir)
	}
	return valid, invalid, nil
}

// declareProducer adds `producer: "<producer>"` to the event option of the
// event name in the proto source src.
func declareProducer(src, name, producer string) (string, error) {
	i := strings.Index(src, "name: \""+name+"\"\n")
	if i < 0 {
		return "", fmt.Errorf("the event option of %s is not there", name)
	}
	end := strings.Index(src[i:], "};")
	if end < 0 {
		return "", fmt.Errorf("the event option of %s does not end", name)
	}
	indent := src[strings.LastIndex(src[:i], "\n")+1 : i]
	at := strings.LastIndex(src[:i+end], "\n") + 1
	return src[:at] + indent + "producer: \"" + producer + "\"\n" + src[at:], nil
}
