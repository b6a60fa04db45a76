// Command contractgen writes the generated parts of event-contracts/: each
// event's JSON Schema at <domain>/<context>/<entity>.<action>.v<N>.json (from
// buf's protoc-gen-jsonschema output in .build/jsonschema) and catalog.json,
// the list of every event with its subject. `make generate` runs it after
// `buf generate`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/shopbus/shopbus/internal/event"
)

func main() {
	in := flag.String("in", ".build/jsonschema", "protoc-gen-jsonschema output")
	out := flag.String("out", "event-contracts", "event contracts root")
	flag.Parse()
	if err := run(*in, *out); err != nil {
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
}

func run(in, out string) error {
	if errs := event.CatalogErrors(); len(errs) > 0 {
		return fmt.Errorf("catalog: %v", errs)
	}
	var entries []Entry
	for _, spec := range event.Catalog() {
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
		schema["$id"] = spec.SchemaPath()
		if err := writeJSON(filepath.Join(out, spec.SchemaPath()), schema); err != nil {
			return err
		}
		entries = append(entries, Entry{
			Type:         spec.Name,
			Version:      spec.Version,
			Domain:       spec.Domain,
			Context:      spec.Context,
			Subject:      spec.Subject(),
			PartitionKey: string(spec.KeyField.Name()),
			Message:      string(md.FullName()),
			Proto:        md.ParentFile().Path(),
			Schema:       spec.SchemaPath(),
		})
	}
	return writeJSON(filepath.Join(out, "catalog.json"), entries)
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
