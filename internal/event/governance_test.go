package event_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	messagev1 "github.com/shopbus/shopbus/gen/go/chat/message/v1"
	orderv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	postv1 "github.com/shopbus/shopbus/gen/go/social/post/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// TestEveryFieldIsClassified: every field of every event of the catalog,
// in nested messages too, declares a classification, and every event an
// owner and a retention. This is the test that fails on an unclassified
// field.
func TestEveryFieldIsClassified(t *testing.T) {
	for _, err := range event.GovernanceErrors() {
		t.Error(err)
	}
	// The walk reaches nested messages: a test that looked at top-level
	// fields only would pass an unclassified order line.
	paths := map[string][]string{}
	for _, spec := range event.Catalog() {
		for _, f := range event.Fields(spec.Message.Descriptor()) {
			paths[spec.String()] = append(paths[spec.String()], f.Path)
		}
	}
	for ev, want := range map[string]string{
		"order.created.v1":    "items.sku",
		"order.created.v2":    "lines.unit_price.amount_minor",
		"telemetry.raw.v1":    "readings.metric",
		"inventory.priced.v1": "unit_price.currency",
	} {
		if !slices.Contains(paths[ev], want) {
			t.Errorf("Fields of %s = %v, want %s among them", ev, paths[ev], want)
		}
	}
}

// ungoverned builds, at run time, an event "widget.made" whose option has
// no owner nor retention, whose top-level field is classified and whose
// nested message has one classified and one unclassified field.
func ungoverned(t *testing.T) proto.Message {
	t.Helper()
	classified := func(c eventv1.Classification) *descriptorpb.FieldOptions {
		o := &descriptorpb.FieldOptions{}
		proto.SetExtension(o, eventv1.E_Classification, c)
		return o
	}
	msgOpts := &descriptorpb.MessageOptions{}
	proto.SetExtension(msgOpts, eventv1.E_Event, &eventv1.EventOptions{Name: "widget.made", PartitionKey: "widget_id"})
	str, msg := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	opt, rep := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("govtest/widget/v1/widget.proto"), Package: proto.String("govtest.widget.v1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("WidgetMade"), Options: msgOpts, Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("widget_id"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("widgetId"), Options: classified(eventv1.Classification_CLASSIFICATION_INTERNAL)},
				{Name: proto.String("parts"), Number: proto.Int32(2), Type: msg, Label: rep, TypeName: proto.String(".govtest.widget.v1.Part"), JsonName: proto.String("parts"), Options: classified(eventv1.Classification_CLASSIFICATION_INTERNAL)},
			}},
			{Name: proto.String("Part"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("sku"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("sku"), Options: classified(eventv1.Classification_CLASSIFICATION_PUBLIC)},
				{Name: proto.String("note"), Number: proto.Int32(2), Type: str, Label: opt, JsonName: proto.String("note")},
			}},
		},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dynamicpb.NewMessage(fd.Messages().ByName("WidgetMade"))
}

// TestGovernanceErrorsNameWhatIsMissing: an unclassified nested field, a
// missing owner and a missing retention are each reported, naming the
// field's path and what to add.
func TestGovernanceErrorsNameWhatIsMissing(t *testing.T) {
	spec, err := event.SpecOf(ungoverned(t))
	if err != nil {
		t.Fatal(err)
	}
	errs := spec.GovernanceErrors()
	var text []string
	for _, err := range errs {
		if !errors.Is(err, event.ErrUngoverned) {
			t.Errorf("%v does not wrap ErrUngoverned", err)
		}
		text = append(text, err.Error())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		"widget.made.v1 (govtest.widget.v1.WidgetMade): no owner",
		"no retention: add retention_days",
		"field parts.note declares no classification",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("governance errors lack %q:\n%s", want, all)
		}
	}
	if len(errs) != 3 {
		t.Errorf("%d errors, want 3 (parts.sku and widget_id are classified):\n%s", len(errs), all)
	}
	// An unclassified field is restricted: nothing is open by default.
	part := spec.Message.Descriptor().Fields().ByName("parts").Message()
	if c := event.ClassificationOf(part.Fields().ByName("note")); !event.Restricted(c) {
		t.Errorf("unclassified field: Restricted(%v) = false", c)
	}
}

func messageSent() *messagev1.MessageSent {
	return &messagev1.MessageSent{
		MessageId:        "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2c",
		ConversationId:   "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2d",
		SenderId:         "11111111-2222-4333-8444-555555555555",
		Body:             "my address is 12 Rue de la Paix",
		MentionedUserIds: []string{"66666666-7777-4888-8999-000000000000"},
		SentAt:           timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	order := orderCreatedV2()
	got, removed := event.Redact(order)
	o := got.(*orderv2.OrderCreated)
	if o.GetCustomer() != nil {
		t.Errorf("customer kept: %v", o.GetCustomer())
	}
	if o.GetOrderId() != order.GetOrderId() || o.GetLines()[0].GetSku() != "MUG-001" || o.GetTotal().GetAmountMinor() != order.GetTotal().GetAmountMinor() {
		t.Errorf("internal and public fields changed: %v", o)
	}
	if !slices.Equal(removed, []string{"customer"}) {
		t.Errorf("removed %v, want [customer]", removed)
	}
	if order.GetCustomer().GetCustomerId() == "" {
		t.Error("Redact changed its argument")
	}

	msg := messageSent()
	// A newer producer's field this build does not know: unclassified here.
	unknown := protowire.AppendTag(nil, 99, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "secret from the future")
	msg.ProtoReflect().SetUnknown(unknown)
	got, removed = event.Redact(msg)
	m := got.(*messagev1.MessageSent)
	if m.GetSenderId() != "" || m.GetBody() != "" || len(m.GetMentionedUserIds()) != 0 || len(m.ProtoReflect().GetUnknown()) != 0 {
		t.Errorf("personal or unknown fields kept: %v", m)
	}
	if m.GetConversationId() != msg.GetConversationId() || m.GetSentAt() == nil {
		t.Errorf("internal fields removed: %v", m)
	}
	want := []string{"(unknown fields)", "body", "mentioned_user_ids", "sender_id"}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
}

func TestRedactEnvelope(t *testing.T) {
	t.Parallel()
	post := &postv1.PostPublished{
		PostId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2e", AuthorId: "11111111-2222-4333-8444-555555555555",
		Body: "hello", Visibility: postv1.Visibility_VISIBILITY_PUBLIC, ProductSku: "MUG-001",
		PublishedAt: timestamppb.Now(),
	}
	env, err := event.New(context.Background(), post, event.WithSource("shopbus/post"))
	if err != nil {
		t.Fatal(err)
	}
	red, removed, err := event.RedactEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	if red.GetPartitionKey() != "" || env.GetPartitionKey() != post.GetAuthorId() {
		t.Errorf("partition key (author_id, personal): redacted %q, original %q", red.GetPartitionKey(), env.GetPartitionKey())
	}
	if want := []string{"author_id", "body", "partition_key"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	var p postv1.PostPublished
	if err := proto.Unmarshal(red.GetPayload(), &p); err != nil {
		t.Fatal(err)
	}
	if p.GetAuthorId() != "" || p.GetBody() != "" || p.GetProductSku() != "MUG-001" || p.GetPostId() != post.GetPostId() {
		t.Errorf("redacted payload %v", &p)
	}

	// order.created's key, order_id, is internal: kept.
	env, err = event.New(context.Background(), orderCreatedV2(), event.WithSource("shopbus/order"))
	if err != nil {
		t.Fatal(err)
	}
	if red, _, err := event.RedactEnvelope(env); err != nil || red.GetPartitionKey() != env.GetPartitionKey() {
		t.Errorf("order.created: key %q, err %v; want %q kept", red.GetPartitionKey(), err, env.GetPartitionKey())
	}

	// What cannot be classified is refused, not passed through.
	bad := proto.CloneOf(env)
	bad.Type = "nothing.known"
	if _, _, err := event.RedactEnvelope(bad); !errors.Is(err, event.ErrUnknownType) {
		t.Errorf("unknown type: err %v, want ErrUnknownType", err)
	}
	bad = proto.CloneOf(env)
	bad.Payload = []byte{0xff, 0xff, 0xff}
	if _, _, err := event.RedactEnvelope(bad); !errors.Is(err, event.ErrMalformed) {
		t.Errorf("garbled payload: err %v, want ErrMalformed", err)
	}
}

func TestScrubber(t *testing.T) {
	t.Parallel()
	msg := messageSent()
	env, err := event.New(context.Background(), msg, event.WithSource("shopbus/message"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := event.SpecOf(msg)
	if err != nil {
		t.Fatal(err)
	}
	var s event.Scrubber
	s.Add(spec.SubjectFor(env.GetPartitionKey()), data)
	text := "sender " + msg.GetSenderId() + " wrote " + msg.GetBody() + " in " + msg.GetConversationId() + " mentioning " + msg.GetMentionedUserIds()[0]
	got := s.Scrub(text)
	for _, personal := range []string{msg.GetSenderId(), msg.GetBody(), msg.GetMentionedUserIds()[0]} {
		if strings.Contains(got, personal) {
			t.Errorf("Scrub kept %q: %s", personal, got)
		}
	}
	if !strings.Contains(got, msg.GetConversationId()) || !strings.Contains(got, event.Redacted) {
		t.Errorf("Scrub removed the internal conversation id or redacted nothing: %s", got)
	}

	// Bytes that do not decode: the subject still tells a personal key.
	var s2 event.Scrubber
	author := "11111111-2222-4333-8444-555555555555"
	s2.Add("social.post.published.v1.3."+author, []byte("garbage"))
	if got := s2.Scrub("handler failed for " + author); strings.Contains(got, author) {
		t.Errorf("key of a personal-keyed subject kept: %s", got)
	}
	var zero event.Scrubber
	if got := zero.Scrub("nothing to hide"); got != "nothing to hide" {
		t.Errorf("zero Scrubber changed text: %s", got)
	}
}

func TestRedactSubject(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{
		"social.post.published.v1.11111111-2222-4333-8444-555555555555":   "social.post.published.v1.[redacted]",
		"ecommerce.order.created.v2.0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b": "ecommerce.order.created.v2.0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b",
		"shopbus.dlq.X.y.1": "shopbus.dlq.X.y.1",
		"nodots":            "nodots",
	} {
		if got := event.RedactSubject(subject); got != want {
			t.Errorf("RedactSubject(%q) = %q, want %q", subject, got, want)
		}
	}
}

func TestClassificationName(t *testing.T) {
	t.Parallel()
	for c, want := range map[eventv1.Classification]string{
		eventv1.Classification_CLASSIFICATION_UNSPECIFIED: "unclassified",
		eventv1.Classification_CLASSIFICATION_PUBLIC:      "public",
		eventv1.Classification_CLASSIFICATION_SENSITIVE:   "sensitive",
	} {
		if got := event.ClassificationName(c); got != want {
			t.Errorf("ClassificationName(%v) = %q, want %q", c, got, want)
		}
	}
}
