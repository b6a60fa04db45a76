// Package validtest holds the differential checks of the generated fast path
// (docs/adr/007-event-fast-path.md) for tests: Variants makes messages that
// sit on and around every bound a message's protovalidate rules state, and
// CheckIsValid and CheckCodec compare the generated code with protovalidate
// and protobuf-go on them. internal/event runs them on the envelope and every
// event; internal/valid on a message that uses every rule the generator
// compiles.
package validtest

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	validtestv1 "github.com/shopbus/shopbus/gen/go/shopbus/validtest/v1"
)

// Fast is what the fast path generates for a message: IsValid
// (tools/protoc-gen-shopbus-valid), Plain (same) and vtprotobuf's encoding.
type Fast interface {
	proto.Message
	IsValid() bool
	Plain() bool
	MarshalVT() ([]byte, error)
	UnmarshalVT([]byte) error
}

// CheckIsValid fails t for each message on which IsValid and protovalidate
// disagree, and when the messages do not produce both answers. It returns
// how many protovalidate accepted.
func CheckIsValid(t *testing.T, name string, msgs []proto.Message) (valid int) {
	t.Helper()
	for _, msg := range msgs {
		fast, ok := msg.(Fast)
		if !ok {
			t.Fatalf("%s: %T has no generated IsValid", name, msg)
		}
		err := protovalidate.Validate(msg)
		if got := fast.IsValid(); got != (err == nil) {
			t.Errorf("%s: IsValid() = %v, protovalidate says %v for %v", name, got, err, msg)
		}
		if err == nil {
			valid++
		}
	}
	if valid == 0 || valid == len(msgs) {
		t.Errorf("%s: protovalidate accepts %d of %d samples: they do not exercise both answers", name, valid, len(msgs))
	}
	return valid
}

// CheckCodec fails t for each message that marshal (internal/event's
// encoder) writes otherwise than protobuf-go, or whose protobuf-go encoding
// unmarshal (its decoder) reads otherwise than protobuf-go. It also checks
// the generated code directly: a plain message's MarshalVT is protobuf-go's
// encoding, and UnmarshalVT reads it back.
func CheckCodec(t *testing.T, name string, msgs []proto.Message,
	marshal func(proto.Message) ([]byte, error), unmarshal func([]byte, proto.Message) error) {
	t.Helper()
	for _, msg := range msgs {
		want, wantErr := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		got, err := marshal(msg)
		if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Errorf("%s: marshal = %x, %v; protobuf-go writes %x, %v for %v", name, got, err, want, wantErr, msg)
			continue
		}
		if wantErr != nil {
			continue
		}
		fast := msg.(Fast)
		if fast.Plain() {
			if vt, err := fast.MarshalVT(); err != nil || !bytes.Equal(vt, want) {
				t.Errorf("%s: plain, but MarshalVT = %x, %v; protobuf-go writes %x for %v", name, vt, err, want, msg)
			}
		}
		back := msg.ProtoReflect().New().Interface()
		if err := unmarshal(want, back); err != nil || !Same(back, msg) {
			t.Errorf("%s: unmarshal(%x) = %v, %v; want %v", name, want, back, err, msg)
		}
	}
}

// Same reports whether a and b are equal and encode to the same bytes:
// proto.Equal alone takes -0.0 for 0.
func Same(a, b proto.Message) bool {
	if !proto.Equal(a, b) {
		return false
	}
	ab, errA := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	bb, errB := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ab, bb)
}

// Variants returns copies of msg, each with one change, in msg or in any
// message inside it: a field cleared, set to a value on or either side of a
// bound its rules state, or to a generic edge value (malformed text, -0.0,
// NaN, the limits of its kind); a list cut or grown around its item limits;
// an unknown field added.
func Variants(msg proto.Message) []proto.Message {
	var out []proto.Message
	var walk func(path []step, m protoreflect.Message)
	walk = func(path []step, m protoreflect.Message) {
		out = append(out, with(msg, path, func(m protoreflect.Message) {
			m.SetUnknown(append(m.GetUnknown(), 0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01)) // field 536870911 = 1
		}))
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			for _, edit := range edits(fd, m) {
				out = append(out, with(msg, path, edit))
			}
			switch {
			case fd.Message() == nil || fd.IsMap():
			case fd.IsList():
				if l := m.Get(fd).List(); l.Len() > 0 {
					walk(append(path[:len(path):len(path)], step{fd, 0}), l.Get(0).Message())
				}
			case m.Has(fd):
				walk(append(path[:len(path):len(path)], step{fd, -1}), m.Get(fd).Message())
			}
		}
	}
	walk(nil, msg.ProtoReflect())
	return out
}

// step is one field (and list index, or -1) on the way to a nested message.
type step struct {
	fd    protoreflect.FieldDescriptor
	index int
}

// with returns a copy of root with edit applied to the message at path.
func with(root proto.Message, path []step, edit func(protoreflect.Message)) proto.Message {
	c := proto.Clone(root)
	m := c.ProtoReflect()
	for _, s := range path {
		if s.index < 0 {
			m = m.Mutable(s.fd).Message()
		} else {
			m = m.Mutable(s.fd).List().Get(s.index).Message()
		}
	}
	edit(m)
	return c
}

// edits returns the changes tried on field fd of m.
func edits(fd protoreflect.FieldDescriptor, m protoreflect.Message) []func(protoreflect.Message) {
	out := []func(protoreflect.Message){func(m protoreflect.Message) { m.Clear(fd) }}
	rules, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	switch {
	case fd.IsMap():
	case fd.IsList():
		if m.Get(fd).List().Len() == 0 {
			return out
		}
		counts := []int{1, 2, 101, 501}
		for _, n := range []uint64{rules.GetRepeated().GetMinItems(), rules.GetRepeated().GetMaxItems()} {
			if n > 0 && n < 10_000 {
				counts = append(counts, int(n)-1, int(n), int(n)+1)
			}
		}
		for _, n := range counts {
			out = append(out, func(m protoreflect.Message) { resize(m.Mutable(fd).List(), fd, n) })
		}
		if fd.Message() == nil {
			for _, v := range values(fd, rules.GetRepeated().GetItems()) {
				out = append(out, func(m protoreflect.Message) { m.Mutable(fd).List().Set(0, v) })
			}
		}
	case fd.Message() != nil:
		out = append(out, func(m protoreflect.Message) { m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message())) })
	default:
		for _, v := range values(fd, rules) {
			out = append(out, func(m protoreflect.Message) { m.Set(fd, v) })
		}
	}
	return out
}

// resize makes l hold n copies of its first element.
func resize(l protoreflect.List, fd protoreflect.FieldDescriptor, n int) {
	first := l.Get(0)
	l.Truncate(0)
	for range max(n, 0) {
		if fd.Message() != nil {
			l.Append(protoreflect.ValueOfMessage(proto.Clone(first.Message().Interface()).ProtoReflect()))
		} else {
			l.Append(first)
		}
	}
}

// values returns edge values of fd's kind: on and either side of each bound
// in rules, and generic ones.
func values(fd protoreflect.FieldDescriptor, rules *validate.FieldRules) []protoreflect.Value {
	bounds := ruleValues(rules)
	var out []protoreflect.Value
	switch fd.Kind() {
	case protoreflect.StringKind:
		texts := []string{
			"", "a", "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", "0193A5E2-7C1D-7B3E-9F4A-2D6C8E0F1A2B",
			"0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2", "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2g", "0193a5e27c1d-7b3e-9f4a-2d6c8e0f1a2b0",
			"EUR", "eur", "EU", "EURO", "E1R", "SKU-1", "MUG-001", "-MUG", "ABCD", "ABCD1234ABCD1234", "ABCD1234ABCD12345",
			"order.created", "Order.created", "order.", "a.b", "shopbus/order", " ", "\xff", "EU\xff", "é",
		}
		for _, n := range []int{3, 4, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257} {
			texts = append(texts, strings.Repeat("A", n), strings.Repeat("é", n))
		}
		for _, b := range bounds {
			switch b := b.Interface().(type) {
			case string:
				texts = append(texts, b, b+"x", strings.ToLower(b), strings.ToUpper(b))
				if b != "" {
					texts = append(texts, b[:len(b)-1])
				}
			case uint64: // a length
				if b < 10_000 {
					for _, n := range []int{int(b) - 1, int(b), int(b) + 1} {
						texts = append(texts, strings.Repeat("A", max(n, 0)), strings.Repeat("é", max(n, 0)))
					}
				}
			}
		}
		for _, s := range texts {
			out = append(out, protoreflect.ValueOfString(s))
		}
	case protoreflect.BytesKind:
		lengths := []int{0, 1, 8, 16, 1 << 20, 1<<20 + 1}
		for _, b := range bounds {
			if n, ok := b.Interface().(uint64); ok && n < 2<<20 {
				lengths = append(lengths, int(n)-1, int(n), int(n)+1)
			}
		}
		for _, n := range lengths {
			out = append(out, protoreflect.ValueOfBytes(make([]byte, max(n, 0))))
		}
	case protoreflect.BoolKind:
		out = append(out, protoreflect.ValueOfBool(true), protoreflect.ValueOfBool(false))
	case protoreflect.EnumKind:
		numbers := []int64{-1, 0, 1, 2, 3, 4, 5, 99}
		for _, b := range bounds {
			if n, ok := b.Interface().(int32); ok {
				numbers = append(numbers, int64(n)-1, int64(n), int64(n)+1)
			}
		}
		for _, n := range numbers {
			if n >= math.MinInt32 && n <= math.MaxInt32 {
				out = append(out, protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)))
			}
		}
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		floats := []float64{0, math.Copysign(0, -1), -0.0001, 0.5, 1, 1.0001, -1, 1e9, math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat32, math.MaxFloat64}
		for _, b := range bounds {
			var f float64
			switch b := b.Interface().(type) {
			case float64:
				f = b
			case float32:
				f = float64(b)
			default:
				continue
			}
			floats = append(floats, math.Nextafter(f, math.Inf(-1)), f, math.Nextafter(f, math.Inf(1)),
				float64(math.Nextafter32(float32(f), float32(math.Inf(-1)))), float64(math.Nextafter32(float32(f), float32(math.Inf(1)))))
		}
		for _, f := range floats {
			if fd.Kind() == protoreflect.FloatKind {
				out = append(out, protoreflect.ValueOfFloat32(float32(f)))
			} else {
				out = append(out, protoreflect.ValueOfFloat64(f))
			}
		}
	default:
		ints := []int64{0, 1, -1, 2, 99, 100, 101, 10000, 10001, 1e12, 1e12 + 1, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64}
		var uints []uint64
		for _, b := range bounds {
			switch b := b.Interface().(type) {
			case int32:
				ints = append(ints, int64(b)-1, int64(b), int64(b)+1)
			case int64:
				ints = append(ints, b-1, b, b+1) // wraps at the limits: still edge values
			case uint32:
				uints = append(uints, uint64(b)-1, uint64(b), uint64(b)+1)
			case uint64:
				uints = append(uints, b-1, b, b+1)
			}
		}
		for _, n := range ints {
			if n >= 0 {
				uints = append(uints, uint64(n))
			}
		}
		uints = append(uints, math.MaxUint32, math.MaxUint32+1, math.MaxUint64)
		switch fd.Kind() {
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			for _, n := range ints {
				if n >= math.MinInt32 && n <= math.MaxInt32 {
					out = append(out, protoreflect.ValueOfInt32(int32(n)))
				}
			}
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			for _, n := range ints {
				out = append(out, protoreflect.ValueOfInt64(n))
			}
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			for _, n := range uints {
				if n <= math.MaxUint32 {
					out = append(out, protoreflect.ValueOfUint32(uint32(n)))
				}
			}
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			for _, n := range uints {
				out = append(out, protoreflect.ValueOfUint64(n))
			}
		}
	}
	return out
}

// Rules returns a valid shopbus.validtest.v1.Rules, the message that uses
// every rule the generator compiles: each of its variants breaks, or keeps,
// one rule at a time.
func Rules() *validtestv1.Rules {
	return &validtestv1.Rules{
		SRequiredUuid:     "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		SLen:              "abc",
		SMinMax:           "abcd",
		SBytes:            "éé",
		SLenBytes:         "abcd",
		SPatternScan:      "order.created",
		SPatternRegexp:    "abcd",
		SIn:               "EUR",
		SNotIn:            "good",
		SConst:            "fixed",
		SOptional:         proto.String("abcé"),
		SOptionalRequired: proto.String("ab"),
		BLen:              make([]byte, 8),
		BMinMax:           []byte{1, 2},
		BoolConst:         true,
		EDefined:          validtestv1.Color_COLOR_RED,
		EIn:               validtestv1.Color_COLOR_GREEN,
		ENotIn:            validtestv1.Color_COLOR_RED,
		EConst:            validtestv1.Color_COLOR_GREEN,
		I32:               4,
		I64:               10,
		U32:               100,
		U64:               1,
		Si32:              -1,
		Si64:              6,
		F32:               3,
		F64:               5,
		Sf32:              -3,
		Sf64:              -1,
		DRange:            1,
		DFinite:           -2.5,
		DIgnoreZero:       math.SmallestNonzeroFloat64,
		Fl:                -1.5,
		DOptional:         proto.Float64(0),
		DConst:            0.5,
		I64Required:       -7,
		RItems:            []string{"AB", "CD"},
		RIntsIgnore:       []int32{0, 6},
		RInner:            []*validtestv1.Inner{{Name: "abc", N: 9}},
		InnerRequired:     &validtestv1.Inner{Name: "x"},
		InnerOptional:     &validtestv1.Inner{Name: "éé", N: 1},
		RUuid:             []string{"0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b"},
		RDoubles:          []float64{1, math.Copysign(0, -1)},
		TsRequired:        &timestamppb.Timestamp{Seconds: 1764000000},
		RRequired:         []string{""},
		SPatternAlt:       "",
		EIgnoreZero:       validtestv1.Color_COLOR_GREEN,
		FlOptional:        proto.Float32(1),
		SMaxMultibyte:     "éé",
	}
}

// ruleValues returns every value set in rules' type rules: bounds, lengths,
// constants, in and not_in lists.
func ruleValues(rules *validate.FieldRules) []protoreflect.Value {
	typeOneof := rules.ProtoReflect().Descriptor().Oneofs().ByName("type")
	fd := rules.ProtoReflect().WhichOneof(typeOneof)
	if fd == nil {
		return nil
	}
	var out []protoreflect.Value
	rules.ProtoReflect().Get(fd).Message().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			for i := range v.List().Len() {
				out = append(out, v.List().Get(i))
			}
		case fd.Kind() != protoreflect.BoolKind && fd.Message() == nil:
			out = append(out, v)
		}
		return true
	})
	return out
}
