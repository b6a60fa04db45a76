package main

import (
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// The generated code of the real contracts is tested against protovalidate
// and protobuf-go in internal/event. These tests check what the plugin
// refuses to compile, and that it says so.

type field struct {
	name     string
	typ      descriptorpb.FieldDescriptorProto_Type
	label    descriptorpb.FieldDescriptorProto_Label
	rules    *validate.FieldRules
	typeName string
}

// run generates the file of one message M made of fields, and returns the
// generated source.
func run(t *testing.T, fields ...field) string {
	t.Helper()
	msg := &descriptorpb.DescriptorProto{Name: proto.String("M")}
	var nested []*descriptorpb.DescriptorProto
	for i, f := range fields {
		fd := &descriptorpb.FieldDescriptorProto{
			Name: proto.String(f.name), Number: proto.Int32(int32(i + 1)), Type: f.typ.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String(f.name),
		}
		if f.label != 0 {
			fd.Label = f.label.Enum()
		}
		if f.typeName != "" {
			fd.TypeName = proto.String(f.typeName)
		}
		if f.rules != nil {
			fd.Options = &descriptorpb.FieldOptions{}
			proto.SetExtension(fd.Options, validate.E_Field, f.rules)
		}
		msg.Field = append(msg.Field, fd)
		if f.typeName == ".t.v1.M.EntriesEntry" {
			nested = append(nested, &descriptorpb.DescriptorProto{
				Name: proto.String("EntriesEntry"),
				Field: []*descriptorpb.FieldDescriptorProto{
					{Name: proto.String("key"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String("key")},
					{Name: proto.String("value"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String("value")},
				},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			})
		}
	}
	msg.NestedType = nested
	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("t/v1/t.proto"), Package: proto.String("t.v1"), Syntax: proto.String("proto3"),
		Options:     &descriptorpb.FileOptions{GoPackage: proto.String("example.com/t/v1;tv1")},
		MessageType: []*descriptorpb.DescriptorProto{msg},
	}
	plugin, err := protogen.Options{}.New(&pluginpb.CodeGeneratorRequest{
		FileToGenerate: []string{"t/v1/t.proto"},
		ProtoFile:      []*descriptorpb.FileDescriptorProto{file},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := generate(plugin); err != nil {
		t.Fatal(err)
	}
	resp := plugin.Response()
	if resp.Error != nil || len(resp.File) != 1 {
		t.Fatalf("response: %v, %d files", resp.GetError(), len(resp.File))
	}
	return resp.File[0].GetContent()
}

const (
	str    = descriptorpb.FieldDescriptorProto_TYPE_STRING
	int64T = descriptorpb.FieldDescriptorProto_TYPE_INT64
)

func TestGeneratesWhatItCompiles(t *testing.T) {
	src := run(t,
		field{name: "id", typ: str, rules: &validate.FieldRules{Required: proto.Bool(true), Type: &validate.FieldRules_String_{String_: &validate.StringRules{WellKnown: &validate.StringRules_Uuid{Uuid: true}}}}},
		field{name: "n", typ: int64T, rules: &validate.FieldRules{Type: &validate.FieldRules_Int64{Int64: &validate.Int64Rules{
			GreaterThan: &validate.Int64Rules_Gte{Gte: 1}, LessThan: &validate.Int64Rules_Lte{Lte: 9}}}}},
	)
	for _, want := range []string{
		"func (x *M) IsValid() bool",
		`if x.Id == "" || !valid.UUID(x.Id) {`,
		"if !(x.N >= 1) || !(x.N <= 9) {",
		"func (x *M) Plain() bool",
		"if !utf8.ValidString(x.Id) {",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("generated code lacks %q:\n%s", want, src)
		}
	}
}

func TestSaysWhatItDoesNotCompile(t *testing.T) {
	for _, c := range []struct {
		name  string
		field field
		want  string
	}{
		{"field CEL", field{name: "s", typ: str, rules: &validate.FieldRules{Cel: []*validate.Rule{{Id: proto.String("r"), Expression: proto.String("this != 'x'")}}}},
			"M has no IsValid: field s: a CEL rule. protovalidate checks it alone."},
		{"email", field{name: "s", typ: str, rules: &validate.FieldRules{Type: &validate.FieldRules_String_{String_: &validate.StringRules{WellKnown: &validate.StringRules_Email{Email: true}}}}},
			"M has no IsValid: field s: string rule email."},
		{"inverted range", field{name: "n", typ: int64T, rules: &validate.FieldRules{Type: &validate.FieldRules_Int64{Int64: &validate.Int64Rules{
			GreaterThan: &validate.Int64Rules_Gt{Gt: 9}, LessThan: &validate.Int64Rules_Lt{Lt: 1}}}}},
			"M has no IsValid: field n: an inverted (exclusive) int64 range."},
		{"rules of another type", field{name: "s", typ: str, rules: &validate.FieldRules{Type: &validate.FieldRules_Int64{Int64: &validate.Int64Rules{Const: proto.Int64(1)}}}},
			"M has no IsValid: field s: int64 rules on a string field."},
		{"predefined rule", field{name: "s", typ: str, rules: predefined()},
			"M has no IsValid: field s: string rule (unknown fields)."},
		{"map", field{name: "entries", typ: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED, typeName: ".t.v1.M.EntriesEntry"},
			"M has no Plain: map field entries. protobuf-go encodes and decodes it."},
	} {
		t.Run(c.name, func(t *testing.T) {
			if src := run(t, c.field); !strings.Contains(src, c.want) {
				t.Errorf("generated code lacks %q:\n%s", c.want, src)
			}
		})
	}
}

// predefined returns string rules holding an extension the plugin does not
// link, as a predefined rule declared in a contract's own proto arrives.
func predefined() *validate.FieldRules {
	r := &validate.StringRules{}
	r.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 1000, protowire.VarintType), 1))
	return &validate.FieldRules{Type: &validate.FieldRules_String_{String_: r}}
}
