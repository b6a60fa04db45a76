// Command contractgen writes the generated parts of event-contracts/ and
// the event catalog in docs/catalog/: each event's JSON Schema at
// <domain>/<context>/<entity>.<action>.v<N>.json (from buf's
// protoc-gen-jsonschema output in .build/jsonschema), catalog.json, the list
// of every event with its subject, owner, retention, classification,
// producer and consumers, and a Markdown page per event and version with an
// index (docs/catalog/README.md). Producers come from the contracts'
// declarations and consumers from the services' registrations in
// internal/stack. It refuses an event that is not governed (an owner, a
// retention, a classification on every field). `make generate` runs it
// after `buf generate`.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

func main() {
	in := flag.String("in", ".build/jsonschema", "protoc-gen-jsonschema output")
	out := flag.String("out", "event-contracts", "event contracts root")
	docsDir := flag.String("docs", "docs/catalog", "where the catalog pages go (relative to the repository root, which is the working directory)")
	flag.Parse()
	if err := run(*in, *out, *docsDir); err != nil {
		log.Fatalf("contractgen: %v", err)
	}
}

// Entry is one row of catalog.json.
type Entry struct {
	Type    string `json:"type"`
	Version uint32 `json:"version"`
	Domain  string `json:"domain"`
	Context string `json:"context"`
	Subject string `json:"subject"`
	// PartitionKey is the payload field whose value ends the subject
	// ("<subject>.<key>") and orders key-based consumers.
	PartitionKey string `json:"partition_key"`
	Message      string `json:"message"`
	Proto        string `json:"proto"`
	Schema       string `json:"schema"`
	// Owner is the team that owns the event.
	Owner string `json:"owner"`
	// RetentionDays is how long its stream keeps it, at least.
	RetentionDays int `json:"retention_days"`
	// Classification is the most restricted classification of its fields;
	// PersonalFields and SensitiveFields are the paths of the fields
	// treated as such.
	Classification  string   `json:"classification"`
	PersonalFields  []string `json:"personal_fields"`
	SensitiveFields []string `json:"sensitive_fields"`
	// Producer is the declared producer (envelope source), "" when none.
	Producer string `json:"producer"`
	// Consumers are the consumers services register for the event.
	Consumers []consumerRef `json:"consumers"`
}

func run(in, out, docsDir string) error {
	if errs := event.CatalogErrors(); len(errs) > 0 {
		return fmt.Errorf("catalog: %w", errors.Join(errs...))
	}
	if errs := event.GovernanceErrors(); len(errs) > 0 {
		return fmt.Errorf("catalog: every event needs an owner, a retention and a classification on every field (docs/governance.md):\n%w", errors.Join(errs...))
	}
	services := registry()
	all := event.Catalog()
	descriptions := docs{}
	var entries []Entry
	for _, spec := range all {
		md := spec.Message.Descriptor()
		src := filepath.Join(in, string(md.FullName())+".schema.bundle.json")
		raw, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("%s: %w", spec, err)
		}
		var schema map[string]any
		if err := json.Unmarshal(raw, &schema); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		if err := descriptions.addSchema(raw); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		schema["$id"] = spec.SchemaPath()
		if err := writeJSON(filepath.Join(out, spec.SchemaPath()), schema); err != nil {
			return err
		}
		entries = append(entries, Entry{
			Type:            spec.Name,
			Version:         spec.Version,
			Domain:          spec.Domain,
			Context:         spec.Context,
			Subject:         spec.Subject(),
			PartitionKey:    string(spec.KeyField.Name()),
			Message:         string(md.FullName()),
			Proto:           md.ParentFile().Path(),
			Schema:          spec.SchemaPath(),
			Owner:           spec.Owner,
			RetentionDays:   int(spec.Retention / (24 * time.Hour)),
			Classification:  event.ClassificationName(highest(md)),
			PersonalFields:  nonNil(restrictedPaths(md, eventv1.Classification_CLASSIFICATION_PERSONAL)),
			SensitiveFields: nonNil(restrictedPaths(md, eventv1.Classification_CLASSIFICATION_SENSITIVE)),
			Producer:        spec.Producer,
			Consumers:       nonNil(consumersOf(spec, services)),
		})
	}
	if err := writeJSON(filepath.Join(out, "catalog.json"), entries); err != nil {
		return err
	}
	changelog, err := os.ReadFile(filepath.Join(out, "CHANGELOG.md"))
	if err != nil {
		return err
	}
	changes, err := parseChangelog(string(changelog))
	if err != nil {
		return err
	}
	return writePages(docsDir, all, services, descriptions, changes)
}

// writePages writes the catalog's pages into dir and removes the pages of
// events that are gone: dir holds generated pages only.
func writePages(dir string, all []event.Spec, services []service, descriptions docs, changes []changeEntry) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pages := map[string]string{}
	for _, spec := range all {
		text, err := page{spec: spec, all: all, services: services, docs: descriptions, changes: changes, root: relRoot(dir)}.render()
		if err != nil {
			return err
		}
		pages[pageName(spec)] = text
	}
	text, err := index(all, services)
	if err != nil {
		return err
	}
	pages["README.md"] = text
	old, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if _, keep := pages[filepath.Base(f)]; !keep {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	for name, text := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// nonNil is s, or an empty slice for nil: catalog.json says [] rather than
// null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
