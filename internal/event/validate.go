package event

import (
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Validate checks msg, an envelope or an event, against its protovalidate
// rules. The error wraps ErrInvalid and a *protovalidate.ValidationError whose
// violations name each offending field.
func Validate(msg proto.Message) error {
	return validate(named(msg.ProtoReflect().Descriptor().FullName()), msg)
}

// validate is Validate naming what was validated ("envelope",
// "order.created.v2") in its error. protovalidate names the violations. It
// is generic so that what is made an interface only when msg is invalid.
func validate[S fmt.Stringer](what S, msg proto.Message) error {
	if err := protovalidate.Validate(msg); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
	}
	if field := nulString(msg.ProtoReflect()); field != "" {
		return fmt.Errorf("%w: %s: %s holds a NUL character, which no event's text may (PostgreSQL's text cannot store it)", ErrInvalid, what, field)
	}
	return nil
}

// nulString returns the path of the first string field of m, at any depth,
// that holds a NUL character, or "". It builds the path only when it finds
// one: every event is checked on its way in and out, and most hold none.
func nulString(m protoreflect.Message) (path string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len() && path == ""; i++ {
				if found, below := nulIn(fd, l.Get(i)); found {
					path = joinPath(fmt.Sprintf("%s[%d]", fd.Name(), i), below)
				}
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if strings.ContainsRune(k.String(), 0) || fd.MapValue().Kind() == protoreflect.StringKind && strings.ContainsRune(mv.String(), 0) {
					path = string(fd.Name())
				}
				return path == ""
			})
		default:
			if found, below := nulIn(fd, v); found {
				path = joinPath(string(fd.Name()), below)
			}
		}
		return path == ""
	})
	return path
}

// nulIn reports whether v, a value (or a list element) of field fd, holds a
// NUL character in a string at any depth, and the path of that string below v.
func nulIn(fd protoreflect.FieldDescriptor, v protoreflect.Value) (found bool, below string) {
	switch {
	case fd.Kind() == protoreflect.StringKind:
		return strings.ContainsRune(v.String(), 0), ""
	case fd.Message() != nil:
		below = nulString(v.Message())
		return below != "", below
	}
	return false, ""
}

// joinPath returns the path of a field named name followed by below.
func joinPath(name, below string) string {
	if below == "" {
		return name
	}
	return name + "." + below
}

// named is a constant fmt.Stringer.
type named string

// String returns n.
func (n named) String() string { return string(n) }

const envelopeName = named("envelope")
