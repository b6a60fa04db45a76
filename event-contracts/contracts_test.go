package contracts_test

import (
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/shopbus/shopbus/internal/event"
)

// TestCatalogIsSound: every event declaration follows the naming rule, no
// two events share a type and version or a subject, and every event is
// governed: an owner, a retention, and a classification on every field,
// nested ones included (docs/governance.md).
func TestCatalogIsSound(t *testing.T) {
	for _, err := range event.CatalogErrors() {
		t.Error(err)
	}
	for _, err := range event.GovernanceErrors() {
		t.Error(err)
	}
	subjects := map[string]event.Spec{}
	keys := map[string]protoreflect.Name{}
	for _, spec := range event.Catalog() {
		if other, dup := subjects[spec.Subject()]; dup {
			t.Errorf("%s and %s share subject %s", spec, other, spec.Subject())
		}
		subjects[spec.Subject()] = spec
		if want := spec.Domain + "." + spec.Name + ".v"; !strings.HasPrefix(spec.Subject(), want) {
			t.Errorf("%s: subject %s does not follow <domain>.<entity>.<action>.v<N>", spec, spec.Subject())
		}
		// The partition key is required, so no event of the type goes
		// unordered, and the same field in every version, so the events
		// of one aggregate share a partition across versions.
		rules, _ := proto.GetExtension(spec.KeyField.Options(), validate.E_Field).(*validate.FieldRules)
		if !rules.GetRequired() {
			t.Errorf("%s: partition key field %s is not required", spec, spec.KeyField.Name())
		}
		if other, ok := keys[spec.Name]; ok && other != spec.KeyField.Name() {
			t.Errorf("%s: partition key %s, but another version uses %s", spec, spec.KeyField.Name(), other)
		}
		keys[spec.Name] = spec.KeyField.Name()
	}
	if len(event.Catalog()) == 0 {
		t.Fatal("the catalog is empty: are the generated packages linked in internal/event/catalog.go?")
	}
}

// TestEveryEventHasItsContract: the JSON Schema, examples, CHANGELOG entry
// and context README of every event in the catalog exist where the naming
// rule puts them.
func TestEveryEventHasItsContract(t *testing.T) {
	changelog := readFile(t, "CHANGELOG.md")
	for _, spec := range event.Catalog() {
		t.Run(spec.String(), func(t *testing.T) {
			schema := readSchema(t, spec.SchemaPath())
			if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("%s: $schema is %v, want draft 2020-12", spec.SchemaPath(), schema["$schema"])
			}
			valid, invalid := examples(t, spec)
			if len(valid) == 0 || len(invalid) == 0 {
				t.Errorf("%s needs at least one valid-*.json and one invalid-*.json example in %s", spec, exampleDir(spec))
			}
			if !strings.Contains(changelog, "`"+spec.String()+"`") {
				t.Errorf("CHANGELOG.md has no entry naming `%s`", spec)
			}
			readme := readFile(t, filepath.Join(spec.Domain, spec.Context, "README.md"))
			for _, section := range []string{"Owner", "Producers", "Consumers"} {
				if !strings.Contains(readme, section) {
					t.Errorf("%s/%s/README.md does not name the %s", spec.Domain, spec.Context, section)
				}
			}
			wantProtoDir := filepath.Join(spec.Domain, spec.Context, "v"+itoa(spec.Version))
			if got := filepath.Dir(spec.Message.Descriptor().ParentFile().Path()); got != wantProtoDir {
				t.Errorf("%s is defined in %s, want %s", spec, got, wantProtoDir)
			}
		})
	}
}

// TestEveryContractIsInCatalog: nothing under event-contracts/ is outside the
// catalog — no proto file that is not linked into the binaries, no schema or
// example folder without its event.
func TestEveryContractIsInCatalog(t *testing.T) {
	schemas, exampleDirs := map[string]bool{}, map[string]bool{}
	for _, spec := range event.Catalog() {
		schemas[spec.SchemaPath()] = true
		exampleDirs[exampleDir(spec)] = true
	}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir() && filepath.Base(filepath.Dir(path)) == "examples":
			if !exampleDirs[path] {
				t.Errorf("%s: no event in the catalog has these examples", path)
			}
			return fs.SkipDir
		case strings.HasSuffix(path, ".proto"):
			if _, err := protoregistry.GlobalFiles.FindFileByPath(path); err != nil {
				t.Errorf("%s is not linked into the binaries: import its generated package in internal/event/catalog.go", path)
				return nil
			}
			if !slices.ContainsFunc(event.Catalog(), func(s event.Spec) bool {
				return s.Message.Descriptor().ParentFile().Path() == path
			}) {
				t.Errorf("%s declares no event", path)
			}
		case strings.HasSuffix(path, ".json") && path != "catalog.json":
			if !schemas[path] {
				t.Errorf("%s: no event in the catalog has this schema path", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCatalogFileMatches: catalog.json lists exactly the catalog.
func TestCatalogFileMatches(t *testing.T) {
	var entries []struct {
		Type    string `json:"type"`
		Version uint32 `json:"version"`
		Subject string `json:"subject"`
		Key     string `json:"partition_key"`
		Schema  string `json:"schema"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "catalog.json")), &entries); err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range entries {
		got = append(got, strings.Join([]string{e.Type, itoa(e.Version), e.Subject, e.Key, e.Schema}, " "))
	}
	for _, s := range event.Catalog() {
		want = append(want, strings.Join([]string{s.Name, itoa(s.Version), s.Subject(), string(s.KeyField.Name()), s.SchemaPath()}, " "))
	}
	if !slices.Equal(got, want) {
		t.Errorf("catalog.json is stale (run make generate):\n got %q\nwant %q", got, want)
	}
}

// TestGeneratedCodeIsALeaf: no generated Go package imports shopbus code
// outside gen/go, so another Go module can use the contracts (issue 10,
// ADR 010).
func TestGeneratedCodeIsALeaf(t *testing.T) {
	const module, gen = "github.com/shopbus/shopbus/", "github.com/shopbus/shopbus/gen/"
	files := 0
	err := filepath.WalkDir(filepath.Join("..", "gen", "go"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, module) && !strings.HasPrefix(p, gen) {
				t.Errorf("%s imports %s: generated code must import nothing of shopbus outside gen/", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no generated Go files found in ../gen/go")
	}
}

func exampleDir(spec event.Spec) string {
	return filepath.Join(spec.Domain, spec.Context, "examples", spec.String())
}

func examples(t *testing.T, spec event.Spec) (valid, invalid []string) {
	t.Helper()
	entries, err := os.ReadDir(exampleDir(spec))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join(exampleDir(spec), e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "valid-") && strings.HasSuffix(e.Name(), ".json"):
			valid = append(valid, path)
		case strings.HasPrefix(e.Name(), "invalid-") && strings.HasSuffix(e.Name(), ".json"):
			invalid = append(invalid, path)
		default:
			t.Errorf("%s: an example is named valid-*.json or invalid-*.json", path)
		}
	}
	return valid, invalid
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readSchema(t *testing.T, path string) map[string]any {
	t.Helper()
	var schema map[string]any
	if err := json.Unmarshal([]byte(readFile(t, path)), &schema); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return schema
}
