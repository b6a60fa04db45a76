package event

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
)

// Spec describes one event of the catalog: one message in one major version.
type Spec struct {
	// Domain is the business domain, the first part of the proto package
	// ("ecommerce").
	Domain string
	// Context is the bounded context that owns the event, the second part of
	// the proto package ("order").
	Context string
	// Name is "<entity>.<action>" ("order.created"), the envelope type.
	Name string
	// Version is the major version of the proto package (1 for ...v1).
	Version uint32
	// Message is the event's protobuf message type.
	Message protoreflect.MessageType
	// KeyField is the payload field that holds the event's partition key
	// ((shopbus.event.v1.event).partition_key): a top-level string field.
	KeyField protoreflect.FieldDescriptor
	// Producer is the service that publishes the event, as Envelope.source
	// names it ((shopbus.event.v1.event).producer); empty when not declared.
	Producer string
	// Owner is the team that owns the event ((shopbus.event.v1.event).owner);
	// empty when not declared, which GovernanceErrors reports.
	Owner string
	// Retention is how long the event's stream keeps it
	// ((shopbus.event.v1.event).retention_days); 0 when not declared, which
	// GovernanceErrors reports.
	Retention time.Duration
}

var (
	namePattern    = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`)
	packagePattern = regexp.MustCompile(`^([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.v([1-9][0-9]*)$`)
)

// SpecOf returns the Spec of an event message, or an error wrapping
// ErrNotEvent when the message is not declared as an event or its names break
// the naming rule.
func SpecOf(msg proto.Message) (Spec, error) {
	mt := msg.ProtoReflect().Type()
	if spec, ok := specCache.Load(mt.Descriptor().FullName()); ok {
		return spec.(Spec), nil
	}
	spec, err := specOfType(mt)
	if err != nil {
		return Spec{}, err
	}
	specCache.Store(mt.Descriptor().FullName(), spec)
	return spec, nil
}

// specCache holds the Spec of every event message seen by SpecOf, keyed by
// full name: deriving it parses options and names.
var specCache sync.Map

func specOfType(mt protoreflect.MessageType) (Spec, error) {
	md := mt.Descriptor()
	opts, ok := declaredOptions(md)
	name := opts.GetName()
	if !ok {
		return Spec{}, fmt.Errorf("%w: %s has no (shopbus.event.v1.event) option", ErrNotEvent, md.FullName())
	}
	if !namePattern.MatchString(name) {
		return Spec{}, fmt.Errorf("%w: %s: event name %q is not <entity>.<action> in lower snake case", ErrNotEvent, md.FullName(), name)
	}
	pkg := string(md.ParentFile().Package())
	m := packagePattern.FindStringSubmatch(pkg)
	if m == nil {
		return Spec{}, fmt.Errorf("%w: %s: package %q is not <domain>.<context>.v<N>", ErrNotEvent, md.FullName(), pkg)
	}
	version, err := strconv.ParseUint(m[3], 10, 32)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %s: package version %q: %w", ErrNotEvent, md.FullName(), m[3], err)
	}
	keyName := opts.GetPartitionKey()
	if keyName == "" {
		return Spec{}, fmt.Errorf("%w: %s: no partition_key in its (shopbus.event.v1.event) option", ErrNotEvent, md.FullName())
	}
	key := md.Fields().ByName(protoreflect.Name(keyName))
	if key == nil || key.Kind() != protoreflect.StringKind || key.Cardinality() == protoreflect.Repeated {
		return Spec{}, fmt.Errorf("%w: %s: partition_key %q is not a top-level string field", ErrNotEvent, md.FullName(), keyName)
	}
	return Spec{Domain: m[1], Context: m[2], Name: name, Version: uint32(version), Message: mt, KeyField: key,
		Producer: opts.GetProducer(), Owner: opts.GetOwner(), Retention: time.Duration(opts.GetRetentionDays()) * 24 * time.Hour}, nil
}

// Subject is the event's type subject, "<domain>.<entity>.<action>.v<N>",
// for example "ecommerce.order.created.v1". An event is published on its type
// subject followed by its partition key (SubjectFor), and stored by JetStream
// with its partition inserted before the key (messaging.EnsureStream).
func (s Spec) Subject() string {
	return fmt.Sprintf("%s.%s.v%d", s.Domain, s.Name, s.Version)
}

// SubjectFor is the NATS subject an event with the given partition key is
// published on: "<domain>.<entity>.<action>.v<N>.<key>".
func (s Spec) SubjectFor(key string) string {
	return s.Subject() + "." + key
}

// Key returns msg's partition key, the value of its KeyField.
func (s Spec) Key(msg proto.Message) string {
	return msg.ProtoReflect().Get(s.KeyField).String()
}

// SchemaPath is the event's JSON Schema, relative to event-contracts/:
// "<domain>/<context>/<entity>.<action>.v<N>.json".
func (s Spec) SchemaPath() string {
	return fmt.Sprintf("%s/%s/%s.v%d.json", s.Domain, s.Context, s.Name, s.Version)
}

// String returns "<entity>.<action>.v<N>".
func (s Spec) String() string {
	return s.Name + ".v" + strconv.FormatUint(uint64(s.Version), 10)
}

// Entity is the first part of the name ("order" in "order.created").
func (s Spec) Entity() string {
	entity, _, _ := strings.Cut(s.Name, ".")
	return entity
}

// declaredOptions returns a message's (shopbus.event.v1.event) option, and
// whether it has one.
func declaredOptions(md protoreflect.MessageDescriptor) (*eventv1.EventOptions, bool) {
	opts, _ := md.Options().(*descriptorpb.MessageOptions)
	if opts == nil || !proto.HasExtension(opts, eventv1.E_Event) {
		return nil, false
	}
	return proto.GetExtension(opts, eventv1.E_Event).(*eventv1.EventOptions), true
}
