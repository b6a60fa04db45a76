// Package newservice generates a new bounded context in the repository, for
// `shopbus new service <domain>/<context>`: the contract (a v1 proto of one
// event with protovalidate rules, a README, valid and invalid examples, a
// CHANGELOG entry), the RPC API, the service package on servicekit with one
// file per use case (an RPC that publishes through the outbox, the consumer
// that applies the event to a read model, an RPC that reads it), its
// migration and test, and its wiring: the event catalog, the stack's
// components (so `shopbus dev` runs it and `shopbus serve <context>` serves
// it, with its own NATS identity), the gateway's admin procedures, compose
// and Prometheus. What it generates passes `make generate`, `make lint` and
// its own test unchanged (TestGenerate, `make template-test`).
package newservice

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"
)

//go:embed templates/*.tmpl
var templates embed.FS

// ErrBadName means the domain or context cannot name a service.
var ErrBadName = errors.New("bad service name")

// ErrExists means the repository already has something the service would
// create.
var ErrExists = errors.New("already exists")

// names are what the templates use.
type names struct {
	Domain, Context, Type string
	Addr, MetricsAddr     string
	Date                  string
	// Consumer is the service's consumer declaration (a function of its
	// package); Describe is its line in `shopbus serve`'s list.
	Consumer, Describe string
	// Events are the existing contract's events (Adopt).
	Events []adopted
	// Keys names their partition keys.
	Keys string
}

// adopted is an event of an existing contract, for Adopt's templates.
type adopted struct {
	Name    string
	Version uint32
	// Subject is its type subject without the version ("chat.message.sent").
	Subject string
	// Valid and Invalid are example files, relative to the contract's
	// examples folder.
	Valid, Invalid string
}

var nameRE = regexp.MustCompile(`^[a-z]{2,20}$`)

// reserved are names a service package cannot take.
var reserved = map[string]bool{"gateway": true, "stack": true, "order": true, "inventory": true, "fraud": true,
	"messaging": true, "event": true, "internal": true, "type": true, "func": true, "package": true, "import": true,
	"map": true, "range": true, "select": true, "chan": true, "go": true, "var": true, "const": true, "return": true}

// Generate writes the service spec names ("<domain>/<context>", lower-case
// letters) into the repository at root and returns the files it wrote or
// changed. It checks everything first and writes nothing when a name is
// bad, a file it would create exists, or a file it edits lacks its marker.
func Generate(root, spec string) ([]string, error) {
	n, err := parse(spec)
	if err != nil {
		return nil, err
	}
	n.Consumer = "RecordedConsumer"
	n.Describe = "Record" + n.Type + ", Get" + n.Type + " (admin), its read model"
	created := map[string]string{
		"event-contracts/{{.Domain}}/{{.Context}}/v1/{{.Context}}_events.proto":                      "events.proto.tmpl",
		"event-contracts/{{.Domain}}/{{.Context}}/README.md":                                         "README.md.tmpl",
		"event-contracts/{{.Domain}}/{{.Context}}/examples/{{.Context}}.recorded.v1/valid-note.json": "valid.json.tmpl",
		"event-contracts/{{.Domain}}/{{.Context}}/examples/{{.Context}}.recorded.v1/invalid-id.json": "invalid.json.tmpl",
		"proto/shopbus/{{.Context}}/v1/{{.Context}}_service.proto":                                   "service.proto.tmpl",
		"services/{{.Context}}/{{.Context}}.go":                                                      "service.go.tmpl",
		"services/{{.Context}}/record_{{.Context}}.go":                                               "record.go.tmpl",
		"services/{{.Context}}/apply_{{.Context}}_recorded.go":                                       "apply.go.tmpl",
		"services/{{.Context}}/get_{{.Context}}.go":                                                  "get.go.tmpl",
		"services/{{.Context}}/handler.go":                                                           "handler.go.tmpl",
		"services/{{.Context}}/migrations/001_{{.Context}}.sql":                                      "migration.sql.tmpl",
		"services/{{.Context}}/{{.Context}}_test.go":                                                 "service_test.go.tmpl",
	}
	for _, dir := range []string{"event-contracts/" + n.Domain + "/" + n.Context, "services/" + n.Context, "proto/shopbus/" + n.Context} {
		if _, err := os.Stat(filepath.Join(root, dir)); err == nil {
			if strings.HasPrefix(dir, "event-contracts/") {
				return nil, fmt.Errorf("%w: %s (to build a service on that contract, adopt it: --adopt)", ErrExists, dir)
			}
			return nil, fmt.Errorf("%w: %s", ErrExists, dir)
		}
	}
	return write(root, n, created, edits, nil)
}

// parse checks the service spec "<domain>/<context>" and returns its names.
func parse(spec string) (names, error) {
	domain, context, ok := strings.Cut(spec, "/")
	if !ok || !nameRE.MatchString(domain) || !nameRE.MatchString(context) || reserved[context] {
		return names{}, fmt.Errorf("%w: %q: want <domain>/<context>, each 2 to 20 lower-case letters, the context not one of the existing services or a Go keyword", ErrBadName, spec)
	}
	return names{Domain: domain, Context: context, Type: strings.ToUpper(context[:1]) + context[1:], Date: time.Now().UTC().Format("2006-01-02")}, nil
}

// write renders created (path template → template file) and applies edits
// and extra (path → a change of its content) in memory, then writes every
// file; nothing is written when anything fails before that.
func write(root string, n names, created map[string]string, edits []edit, extra map[string]func(string) (string, error)) ([]string, error) {
	files := map[string][]byte{} // path (slash-separated, relative to root) → content
	// The serve component's ports follow the existing ones.
	serve, err := os.ReadFile(filepath.Join(root, "cmd/shopbus/serve.go"))
	if err != nil {
		return nil, err
	}
	count := strings.Count(between(string(serve), "var components = []component{", serveMarker), "\t{\"")
	n.Addr, n.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", 8080+count), fmt.Sprintf("127.0.0.1:%d", 9464+count)
	for pathTmpl, tmpl := range created {
		pathBytes, err := render(pathTmpl, pathTmpl, n)
		if err != nil {
			return nil, err
		}
		path := string(pathBytes)
		text, err := templates.ReadFile("templates/" + tmpl)
		if err != nil {
			return nil, err
		}
		content, err := render(tmpl, string(text), n)
		if err != nil {
			return nil, err
		}
		files[path] = content
	}
	for _, e := range edits {
		path := e.path
		old, ok := files[path] // an earlier edit's result
		if !ok {
			var err error
			if old, err = os.ReadFile(filepath.Join(root, path)); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
		insert, err := render(path, e.insert, n)
		if err != nil {
			return nil, err
		}
		content, err := e.apply(string(old), string(insert))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		files[path] = []byte(content)
	}
	for path, change := range extra {
		old, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		content, err := change(string(old))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		files[path] = []byte(content)
	}
	var written []string
	for path, content := range files {
		if strings.HasSuffix(path, ".go") {
			formatted, err := format.Source(content)
			if err != nil {
				return nil, fmt.Errorf("%s: generated Go does not parse: %w", path, err)
			}
			content = formatted
		}
		files[path] = content
	}
	for path, content := range files {
		full := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(full, content, 0o644); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// render executes text as a template named name with n.
func render(name, text string, n names) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"port": func(addr string) string { _, p, _ := strings.Cut(addr, ":"); return p },
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, n); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// between returns the part of s after start and before end ("" if either
// is missing).
func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	before, _, _ := strings.Cut(after, end)
	return before
}

// The markers the generator inserts above; each file keeps its marker.
const (
	componentsMarker = "\t// shopbus new service: new components go above this line."
	adminMarker      = "\t// shopbus new service: generated services go above this line."
	serveMarker      = "\t// shopbus new service: new components go above this line."
	composeMarker    = "  # shopbus new service: new services go above this line."
	gatewayURLMarker = "      # shopbus new service: new services' URLs go above this line."
	prometheusMarker = "  # shopbus new service: new jobs go above this line."
)

// edit inserts text into an existing file.
type edit struct {
	path   string
	insert string // a template
	apply  func(old, insert string) (string, error)
}

// above inserts before the line marker.
func above(marker string) func(old, insert string) (string, error) {
	return func(old, insert string) (string, error) {
		if strings.Count(old, marker+"\n") != 1 {
			return "", fmt.Errorf("the marker %q is not there once", strings.TrimSpace(marker))
		}
		return strings.Replace(old, marker+"\n", insert+marker+"\n", 1), nil
	}
}

// after inserts after the line that holds anchor.
func after(anchor string) func(old, insert string) (string, error) {
	return func(old, insert string) (string, error) {
		i := strings.Index(old, anchor)
		if i < 0 {
			return "", fmt.Errorf("%q is not there", anchor)
		}
		j := i + strings.Index(old[i:], "\n") + 1
		return old[:j] + insert + old[j:], nil
	}
}

// both applies f then g.
func both(f, g func(old, insert string) (string, error), split string) func(old, insert string) (string, error) {
	return func(old, insert string) (string, error) {
		first, second, _ := strings.Cut(insert, split)
		s, err := f(old, first)
		if err != nil {
			return "", err
		}
		return g(s, second)
	}
}

// beforeFirstSection inserts before the first "## " heading.
func beforeFirstSection(old, insert string) (string, error) {
	i := strings.Index(old, "\n## ")
	if i < 0 {
		return "", errors.New("no section to insert before")
	}
	return old[:i+1] + insert + old[i+1:], nil
}

const importSplit = "--- imports above, entry below ---\n"

var edits = []edit{
	{"internal/event/catalog.go", "\t_ \"github.com/shopbus/shopbus/gen/go/{{.Domain}}/{{.Context}}/v1\"\n",
		after("\t_ \"github.com/shopbus/shopbus/gen/go/ecommerce/order/v2\"")},
	{"internal/stack/components.go", `	"github.com/shopbus/shopbus/gen/go/shopbus/{{.Context}}/v1/{{.Context}}v1connect"
	"github.com/shopbus/shopbus/services/{{.Context}}"
` + importSplit + `	{
		name: "{{.Context}}",
		consumers: []messaging.ConsumerConfig{ {{- .Context}}.{{.Consumer}}()},
		apis: []string{ {{- .Context}}v1connect.{{.Type}}ServiceName},
		build: func(s *Stack, rt servicekit.Runtime) (runner, []gateway.Service, error) {
			svc := {{.Context}}.New(rt)
			path, h := {{.Context}}v1connect.New{{.Type}}ServiceHandler({{.Context}}.NewHandler(svc), gateway.HandlerOptions(s.cfg.Auth, s.Telemetry)...)
			return svc, []gateway.Service{ {Name: {{.Context}}v1connect.{{.Type}}ServiceName, Path: path, Handler: h} }, nil
		},
	},
`, both(after("\t\"github.com/shopbus/shopbus/gateway\""), above(componentsMarker), importSplit)},
	{"gateway/admin.go", "\t\"shopbus.{{.Context}}.v1.{{.Type}}Service\",\n", above(adminMarker)},
	{"cmd/shopbus/serve.go", "\t{\"{{.Context}}\", \"{{.Addr}}\", \"{{.MetricsAddr}}\", \"the {{.Context}} service ({{.Domain}}/{{.Context}}): {{.Describe}}\"},\n",
		above(serveMarker)},
	{"compose.yaml", `  {{.Context}}:
    <<: *shopbus
    command: ["serve", "{{.Context}}", "--addr", "0.0.0.0:{{port .Addr}}", "--metrics-addr", "0.0.0.0:{{port .MetricsAddr}}"]
    environment:
      NATS_URL: nats://shopbus:${NATS_PASSWORD:-shopbus-demo-nats}@nats:4222
      DATABASE_URL: postgres://shopbus:${POSTGRES_PASSWORD:-shopbus-demo-postgres}@postgres:5432/shopbus?sslmode=disable
      SHOPBUS_ADMIN_TOKEN: ${SHOPBUS_ADMIN_TOKEN:-shopbus-demo-admin-token}
    depends_on:
      nats:
        condition: service_healthy
      postgres:
        condition: service_healthy
      gateway:
        condition: service_healthy
    healthcheck:
      <<: *healthcheck
      test: ["CMD", "/usr/local/bin/shopbus", "healthcheck", "--url", "http://127.0.0.1:{{port .Addr}}/readyz"]

`, above(composeMarker)},
	{"compose.yaml", "      - --{{.Context}}-url\n      - http://{{.Context}}:{{port .Addr}}\n", above(gatewayURLMarker)},
	{"deploy/prometheus/prometheus.yml", "  - job_name: shopbus-{{.Context}}\n    static_configs: [{targets: [\"{{.Context}}:{{port .MetricsAddr}}\"]}]\n", above(prometheusMarker)},
	{"event-contracts/CHANGELOG.md", "## {{.Date}} — {{.Domain}}/{{.Context}}: {{.Context}}.recorded v1\n\n### Added\n\n" +
		"- `{{.Context}}.recorded.v1` ({{.Domain}}/{{.Context}}, package `{{.Domain}}.{{.Context}}.v1`, message `{{.Type}}Recorded`,\n" +
		"  subject `{{.Domain}}.{{.Context}}.recorded.v1.<{{.Context}}_id>`, partition key `{{.Context}}_id`, producer\n" +
		"  `shopbus/{{.Context}}`): generated by `shopbus new service {{.Domain}}/{{.Context}}`.\n\n", beforeFirstSection},
}
