package event

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
)

// Governance of the contracts (docs/governance.md): every field of every
// event declares its classification ((shopbus.event.v1.classification)),
// and every event its owner and retention. What is personal or sensitive is
// kept out of logs and dead letters: Redact and RedactEnvelope remove it
// from a payload, Scrubber from text written about an event.

// Redacted replaces a removed value in text: in a log line, an error
// message, a subject.
const Redacted = "[redacted]"

// ClassificationOf returns the classification fd declares, or
// CLASSIFICATION_UNSPECIFIED when it declares none.
func ClassificationOf(fd protoreflect.FieldDescriptor) eventv1.Classification {
	opts, _ := fd.Options().(*descriptorpb.FieldOptions)
	if opts == nil || !proto.HasExtension(opts, eventv1.E_Classification) {
		return eventv1.Classification_CLASSIFICATION_UNSPECIFIED
	}
	return proto.GetExtension(opts, eventv1.E_Classification).(eventv1.Classification)
}

// Restricted reports whether values of class c are kept out of logs and dead
// letters unless an admin asks for them: personal and sensitive values, and
// those of an unclassified field (nothing is open by default).
func Restricted(c eventv1.Classification) bool {
	return c != eventv1.Classification_CLASSIFICATION_PUBLIC && c != eventv1.Classification_CLASSIFICATION_INTERNAL
}

// ClassificationName is c in lower case without its prefix: "public",
// "internal", "personal", "sensitive", or "unclassified".
func ClassificationName(c eventv1.Classification) string {
	if c == eventv1.Classification_CLASSIFICATION_UNSPECIFIED {
		return "unclassified"
	}
	name, _ := strings.CutPrefix(c.String(), "CLASSIFICATION_")
	return strings.ToLower(name)
}

// rank orders classifications from the most open to the most restricted;
// an unclassified field is treated as the most restricted.
func rank(c eventv1.Classification) int {
	if c == eventv1.Classification_CLASSIFICATION_UNSPECIFIED {
		return int(eventv1.Classification_CLASSIFICATION_SENSITIVE) + 1
	}
	return int(c)
}

// Field is one field of an event's schema, as Fields finds it.
type Field struct {
	// Path names the field from the event's top level through the message
	// fields it is nested in: "lines.unit_price.currency".
	Path string
	// Depth is 0 for a top-level field, 1 for a field of a message held by
	// a top-level field, and so on.
	Depth int
	// Descriptor is the field's.
	Descriptor protoreflect.FieldDescriptor
	// Classification is what the field declares.
	Classification eventv1.Classification
	// Effective is how the field's values are treated: the most restricted
	// classification along its path (a public field of a personal message
	// is personal).
	Effective eventv1.Classification
}

// Fields returns every field of md and of the messages its fields hold,
// depth first, in declaration order. Messages of google.protobuf
// (Timestamp, Duration …) are values, classified by the field that holds
// them, and not walked; nor is a message already on the path (recursion).
func Fields(md protoreflect.MessageDescriptor) []Field {
	var out []Field
	walkFields(md, "", 0, eventv1.Classification_CLASSIFICATION_PUBLIC, map[protoreflect.FullName]bool{md.FullName(): true}, &out)
	return out
}

func walkFields(md protoreflect.MessageDescriptor, prefix string, depth int, parent eventv1.Classification, onPath map[protoreflect.FullName]bool, out *[]Field) {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		c := ClassificationOf(fd)
		effective := parent
		if rank(c) > rank(parent) {
			effective = c
		}
		path := join(prefix, string(fd.Name()))
		*out = append(*out, Field{Path: path, Depth: depth, Descriptor: fd, Classification: c, Effective: effective})
		if inner := heldMessage(fd); inner != nil && !onPath[inner.FullName()] {
			onPath[inner.FullName()] = true
			walkFields(inner, path, depth+1, effective, onPath, out)
			delete(onPath, inner.FullName())
		}
	}
}

// heldMessage returns the contract message fd holds (a map's value for a
// map), or nil for a scalar, an enum or a google.protobuf message.
func heldMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		fd = fd.MapValue()
	}
	md := fd.Message()
	if md == nil || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return nil
	}
	return md
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// GovernanceErrors returns what the events of the catalog leave undeclared:
// an owner, a retention, the classification of a field. An empty result
// means every event is governed.
func GovernanceErrors() []error {
	var errs []error
	for _, spec := range Catalog() {
		errs = append(errs, spec.GovernanceErrors()...)
	}
	return errs
}

// GovernanceErrors returns what s leaves undeclared, each error wrapping
// ErrUngoverned and saying what to add.
func (s Spec) GovernanceErrors() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s (%s): %s", ErrUngoverned, s, s.Message.Descriptor().FullName(), fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(s.Owner) == "" {
		bad("no owner: add owner: \"<team>\" to its (shopbus.event.v1.event) option")
	}
	if s.Retention <= 0 {
		bad("no retention: add retention_days: <days> (at least 1) to its (shopbus.event.v1.event) option")
	}
	for _, f := range Fields(s.Message.Descriptor()) {
		if f.Classification == eventv1.Classification_CLASSIFICATION_UNSPECIFIED {
			bad("field %s declares no classification: add [(shopbus.event.v1.classification) = CLASSIFICATION_PUBLIC, _INTERNAL, _PERSONAL or _SENSITIVE]", f.Path)
		}
	}
	return errs
}

// Redact returns a copy of msg without the values of its restricted fields
// (Restricted: personal, sensitive or unclassified), in nested messages too,
// and without unknown fields, which no contract classifies; and the paths
// of what it removed, sorted, each once ("customer", "body", "(unknown
// fields)"). msg itself is not changed.
func Redact(msg proto.Message) (proto.Message, []string) {
	c := proto.Clone(msg)
	removed := map[string]bool{}
	redact(c.ProtoReflect(), "", removed)
	return c, slices.Sorted(maps.Keys(removed))
}

func redact(m protoreflect.Message, prefix string, removed map[string]bool) {
	if len(m.GetUnknown()) > 0 {
		m.SetUnknown(nil)
		removed[join(prefix, "(unknown fields)")] = true
	}
	var clear, walk []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		switch {
		case Restricted(ClassificationOf(fd)):
			clear = append(clear, fd)
		case heldMessage(fd) != nil:
			walk = append(walk, fd)
		}
		return true
	})
	for _, fd := range clear {
		m.Clear(fd)
		removed[join(prefix, string(fd.Name()))] = true
	}
	for _, fd := range walk {
		path := join(prefix, string(fd.Name()))
		switch v := m.Mutable(fd); {
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, e protoreflect.Value) bool {
				redact(e.Message(), path, removed)
				return true
			})
		case fd.IsList():
			for i := range v.List().Len() {
				redact(v.List().Get(i).Message(), path, removed)
			}
		default:
			redact(v.Message(), path, removed)
		}
	}
}

// RedactEnvelope returns a copy of env whose payload is Redact's, whose
// partition key is removed when the event's key field is restricted, and
// which has no unknown fields; and the paths of what was removed (payload
// paths as Redact gives them, "partition_key" for the key). It fails,
// wrapping ErrUnknownType or ErrMalformed, when the payload cannot be
// classified: its type is not in the catalog, or it does not decode. The
// payload is not validated: a dead letter's may break its rules.
func RedactEnvelope(env *eventv1.Envelope) (*eventv1.Envelope, []string, error) {
	spec, err := Lookup(env.GetType(), env.GetVersion())
	if err != nil {
		return nil, nil, err
	}
	payload := spec.Message.New().Interface()
	if err := unmarshal(env.GetPayload(), payload); err != nil {
		return nil, nil, fmt.Errorf("%w: %s payload: %w", ErrMalformed, spec, err)
	}
	redacted, removed := Redact(payload)
	b, err := marshal(redacted)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s payload: %w", ErrMalformed, spec, err)
	}
	out := proto.CloneOf(env)
	out.ProtoReflect().SetUnknown(nil)
	out.Payload = b
	if Restricted(ClassificationOf(spec.KeyField)) && out.GetPartitionKey() != "" {
		out.PartitionKey = ""
		removed = append(removed, "partition_key")
	}
	return out, removed, nil
}

// RedactSubject returns subject with its last token, the partition key,
// replaced by Redacted when the event it names has a restricted key field
// (post.published's author_id). It takes a subject as published,
// "<domain>.<entity>.<action>.v<N>.<key>", or as JetStream stores it, with
// the partition before the key. Any other subject is returned as it is.
func RedactSubject(subject string) string {
	spec, ok := specOfSubject(subject)
	if !ok || !Restricted(ClassificationOf(spec.KeyField)) {
		return subject
	}
	return subject[:strings.LastIndexByte(subject, '.')+1] + Redacted
}

// specOfSubject returns the Spec of the event published on subject,
// "<type subject>.<key>" or "<type subject>.<partition>.<key>".
func specOfSubject(subject string) (Spec, bool) {
	tokens := strings.Split(subject, ".")
	if len(tokens) != 5 && len(tokens) != 6 {
		return Spec{}, false
	}
	spec, ok := loadCatalog().bySubject[strings.Join(tokens[:4], ".")]
	return spec, ok
}

// minScrubbed is the length under which a value is not scrubbed from text:
// replacing "EU" or "7" everywhere would garble a message and hide nothing
// (a value that short identifies no one).
const minScrubbed = 4

// Scrubber removes the values of restricted fields from text written about
// events: log lines, error messages, subjects. Add gives it the values of an
// event; the zero Scrubber removes nothing but what RedactSubject does.
type Scrubber struct {
	values []string
}

// Add adds the restricted values of the event in data (an encoded Envelope)
// published on subject: the string values of its restricted payload fields
// (in nested messages too) and, when its key field is restricted, its
// partition key, from the envelope and from the subject's last token. Bytes
// that do not decode add what the subject tells. Numbers and bytes are not
// added: scrubbing "7" from an error message hides nothing.
func (s *Scrubber) Add(subject string, data []byte) {
	if spec, ok := specOfSubject(subject); ok && Restricted(ClassificationOf(spec.KeyField)) {
		s.add(subject[strings.LastIndexByte(subject, '.')+1:])
	}
	env := &eventv1.Envelope{}
	if unmarshal(data, env) != nil {
		return
	}
	spec, err := Lookup(env.GetType(), env.GetVersion())
	if err != nil {
		return
	}
	if Restricted(ClassificationOf(spec.KeyField)) {
		s.add(env.GetPartitionKey())
	}
	payload := spec.Message.New().Interface()
	if unmarshal(env.GetPayload(), payload) != nil {
		return
	}
	s.collect(payload.ProtoReflect(), false)
}

// collect adds the string values of m's restricted fields; all of them when
// restricted is set (m is held by a restricted field).
func (s *Scrubber) collect(m protoreflect.Message, restricted bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		r := restricted || Restricted(ClassificationOf(fd))
		each := func(v protoreflect.Value) {
			switch {
			case fd.Kind() == protoreflect.StringKind && r:
				s.add(v.String())
			case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
				s.collect(v.Message(), r)
			}
		}
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				if r && fd.MapKey().Kind() == protoreflect.StringKind {
					s.add(k.String())
				}
				if vf := fd.MapValue(); vf.Kind() == protoreflect.StringKind && r {
					s.add(e.String())
				} else if vf.Message() != nil {
					s.collect(e.Message(), r)
				}
				return true
			})
		case fd.IsList():
			for i := range v.List().Len() {
				each(v.List().Get(i))
			}
		default:
			each(v)
		}
		return true
	})
}

func (s *Scrubber) add(v string) {
	if len(v) >= minScrubbed && !slices.Contains(s.values, v) {
		s.values = append(s.values, v)
	}
}

// Scrub returns text with every value s holds replaced by Redacted, the
// longest first (a value inside another is not left half-replaced).
func (s *Scrubber) Scrub(text string) string {
	if s == nil || len(s.values) == 0 {
		return text
	}
	values := slices.Clone(s.values)
	slices.SortFunc(values, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(values))
	for _, v := range values {
		pairs = append(pairs, v, Redacted)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// ScrubError is Scrub of err's message, or "" for a nil err.
func (s *Scrubber) ScrubError(err error) string {
	if err == nil {
		return ""
	}
	return s.Scrub(err.Error())
}
