package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/stack"
)

func specOf(t *testing.T, name string, version uint32) event.Spec {
	t.Helper()
	spec, err := event.Lookup(name, version)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestConsumersComeFromTheRegistry: every consumer a service registers in
// internal/stack is listed for every event it reads, and nothing else is;
// a service registered tomorrow appears without any list to edit.
func TestConsumersComeFromTheRegistry(t *testing.T) {
	services := registry()
	if len(services) != len(stack.Components()) {
		t.Fatalf("registry has %d services, the stack %d", len(services), len(stack.Components()))
	}
	for _, spec := range event.Catalog() {
		var want []string
		for _, name := range stack.Components() {
			for _, c := range stack.Consumers(name) {
				if slices.Contains(c.Subjects, spec.Domain+"."+spec.Name) {
					want = append(want, name+"/"+c.Durable)
				}
			}
		}
		var got []string
		for _, c := range consumersOf(spec, services) {
			got = append(got, c.Service+"/"+c.Durable)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: consumers %v, the registry says %v", spec, got, want)
		}
	}
	if len(consumersOf(specOf(t, "order.created", 2), services)) == 0 {
		t.Error("order.created.v2 has no consumer: the registry was not read")
	}

	// A new service, as another engineer registers it.
	telemetry := specOf(t, "telemetry.raw", 1)
	withIoT := append(slices.Clone(services), service{Name: "iot", Consumers: []messaging.ConsumerConfig{
		{Stream: "IOT_TELEMETRY", Durable: "iot-clean-readings", Subjects: []string{"iot.telemetry.raw"}, Strategy: messaging.KeyBased},
	}})
	text, err := page{spec: telemetry, all: event.Catalog(), services: withIoT, docs: docs{}, changes: changesFor(t, telemetry), root: "../../"}.render()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "| `iot` | `iot-clean-readings` | key-based | every version |") {
		t.Errorf("the new service's consumer is not on the page:\n%s", text)
	}
}

func changesFor(t *testing.T, spec event.Spec) []changeEntry {
	t.Helper()
	return []changeEntry{{Release: "2026-12-02 — test", Section: "Added", Text: "- `" + spec.String() + "`: added."}}
}

// TestProducersComeFromTheContracts: a declared producer that is a
// registered service is named as such; a declared one that is not yet
// registered, and an undeclared one, say so.
func TestProducersComeFromTheContracts(t *testing.T) {
	services := registry()
	order := specOf(t, "order.created", 2)
	if name, ok := producerOf(order, services); !ok || name != "order" {
		t.Errorf("producer of order.created.v2 = %q, %v; want order (its contract says shopbus/order)", name, ok)
	}
	post := specOf(t, "post.published", 1)
	post.Producer = "shopbus/social"
	for producer, want := range map[string]string{
		"shopbus/social": "`shopbus/social`, declared by the contract; no service of that name is registered",
		"":               "None declared",
	} {
		post.Producer = producer
		text, err := page{spec: post, all: event.Catalog(), services: services, docs: docs{}, changes: changesFor(t, post), root: "../../"}.render()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, want) {
			t.Errorf("producer %q: page lacks %q:\n%s", producer, want, text)
		}
	}
}

// TestPageContent: a page shows the owner, retention, classification of
// nested fields, rules, versions and the changelog entries naming it.
func TestPageContent(t *testing.T) {
	spec := specOf(t, "order.created", 2)
	changes, err := parseChangelog("# title\n\n## 2026-12-02 — a release\n\n### Added\n\n- `order.created.v2`: see [ADR](../docs/adr/x.md)\n  and more.\n- `order.created.v1`: not this one.\n\n### Changed\n\n- `order.created`, every version: not counted.\n")
	if err != nil {
		t.Fatal(err)
	}
	text, err := page{spec: spec, all: event.Catalog(), services: registry(), docs: docs{}, changes: changes, root: "../../"}.render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| owner | order team |",
		"| retention | 30 days in its stream",
		"| `customer.customer_id` | `string` | personal | `required, string.uuid` |",
		"| `lines.sku` | `string` | public, treated as internal |",
		"`string.pattern=^$\\|^[A-Z0-9]{4,16}$`",
		"- [order.created.v1](order.created.v1.md)",
		"Rule `order_created.currency_consistent`",
		"### 2026-12-02 — a release\n\nAdded:\n\n- `order.created.v2`: see [ADR](../../docs/adr/x.md)\n  and more.",
		"personal: `customer`, `customer.customer_id`",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q:\n%s", want, text)
		}
	}
	for _, not := range []string{"not this one", "not counted"} {
		if strings.Contains(text, not) {
			t.Errorf("page has the entry %q, which names another version or none", not)
		}
	}
	if _, err := (page{spec: spec, all: event.Catalog(), services: registry(), docs: docs{}, root: "../../"}).render(); err == nil ||
		!strings.Contains(err.Error(), "no entry naming `order.created.v2`") {
		t.Errorf("a page without a changelog entry: %v, want an error naming the event", err)
	}
}

func TestParseChangelogRefusesAnEntryOutsideARelease(t *testing.T) {
	if _, err := parseChangelog("# title\n\n- `x.y.v1`: orphan\n"); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("orphan entry: %v, want an error naming line 3", err)
	}
}

// TestWritePagesRemovesStalePages: the folder holds generated pages only;
// the page of an event that is gone is removed.
func TestWritePagesRemovesStalePages(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "gone.created.v1.md")
	if err := os.WriteFile(stale, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	all := event.Catalog()
	var changes []changeEntry
	for _, s := range all {
		changes = append(changes, changesFor(t, s)...)
	}
	if err := writePages(dir, all, registry(), docs{}, changes); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale page kept: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	if len(files) != len(all)+1 {
		t.Errorf("%d pages, want one per event (%d) and the index", len(files), len(all))
	}
}
