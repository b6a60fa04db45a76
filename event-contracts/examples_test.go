package contracts_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shopbus/shopbus/internal/event"
)

// TestExamplesAgree: every valid example passes both its JSON Schema and
// protojson + protovalidate; every invalid example fails both, and both name
// the same offending field.
func TestExamplesAgree(t *testing.T) {
	for _, spec := range event.Catalog() {
		schema, err := jsonschema.NewCompiler().Compile(spec.SchemaPath())
		if err != nil {
			t.Fatalf("%s: %v", spec.SchemaPath(), err)
		}
		valid, invalid := examples(t, spec)
		for _, path := range valid {
			t.Run(path, func(t *testing.T) {
				data := readFile(t, path)
				if fields := schemaErrors(t, schema, data); fields != nil {
					t.Errorf("JSON Schema rejects it at %v", fields)
				}
				if fields, err := protoErrors(spec, data); err != nil {
					t.Errorf("protovalidate rejects it at %v: %v", fields, err)
				}
			})
		}
		for _, path := range invalid {
			t.Run(path, func(t *testing.T) {
				data := readFile(t, path)
				fromSchema := schemaErrors(t, schema, data)
				fromProto, err := protoErrors(spec, data)
				if fromSchema == nil {
					t.Error("JSON Schema accepts it")
				}
				if err == nil {
					t.Error("protojson + protovalidate accept it")
				}
				if fromSchema != nil && err != nil && !slices.ContainsFunc(fromProto, func(f string) bool { return slices.Contains(fromSchema, f) }) {
					t.Errorf("the two name different fields: JSON Schema %v, protovalidate %v (%v)", fromSchema, fromProto, err)
				}
			})
		}
	}
}

// schemaErrors validates data against schema and returns the paths of the
// offending fields ("items/0/quantity"), or nil when it is valid.
func schemaErrors(t *testing.T, schema *jsonschema.Schema, data string) []string {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	err = schema.Validate(inst)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		t.Fatal(err)
	}
	var fields []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if req, ok := e.ErrorKind.(*kind.Required); ok {
			for _, missing := range req.Missing {
				fields = append(fields, strings.Join(append(slices.Clone(e.InstanceLocation), missing), "/"))
			}
		} else if len(e.Causes) == 0 {
			fields = append(fields, strings.Join(e.InstanceLocation, "/"))
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(verr)
	return fields
}

// protoErrors parses data with protojson into the event's message and
// validates it, returning the paths of the offending fields.
func protoErrors(spec event.Spec, data string) ([]string, error) {
	msg := spec.Message.New().Interface()
	if err := protojson.Unmarshal([]byte(data), msg); err != nil {
		return nil, err
	}
	err := event.Validate(msg)
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return nil, err
	}
	var fields []string
	for _, v := range verr.Violations {
		path := protovalidate.FieldPathString(v.Proto.GetField())
		path = strings.NewReplacer("[", "/", "]", "", ".", "/").Replace(path)
		fields = append(fields, path)
	}
	return fields, err
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
