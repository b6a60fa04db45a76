package deadletter

import (
	"slices"

	"google.golang.org/protobuf/proto"

	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// Redact returns a copy of dl as an operator sees it by default
// (docs/governance.md, "Access"): its original message (data) without the
// payload fields its contract classifies personal or sensitive
// (event.RedactEnvelope), and its subject, headers and error without their
// values (event.Scrubber: a handler's error may quote the event; a
// personal partition key ends the subject). Data that is not an event of
// the catalog that decodes cannot be classified, so it is withheld. What
// was removed is listed in redacted_fields.
func Redact(dl *deadletterv1.DeadLetter) *deadletterv1.DeadLetter {
	out := proto.CloneOf(dl)
	var scrub event.Scrubber
	scrub.Add(dl.GetOriginalSubject(), dl.GetData())
	removed := map[string]bool{}
	if len(dl.GetData()) > 0 {
		data, fields, ok := redactData(dl.GetData())
		if ok {
			out.Data = data
			for _, f := range fields {
				removed[f] = true
			}
		} else {
			out.Data = nil
			out.DataWithheld = true
		}
	}
	redactText := func(field, text string) string {
		r := scrub.Scrub(event.RedactSubject(text))
		if r != text {
			removed[field] = true
		}
		return r
	}
	out.OriginalSubject = redactText("original_subject", dl.GetOriginalSubject())
	out.Error = redactText("error", dl.GetError())
	for k, v := range dl.GetHeaders() {
		out.Headers[k] = redactText("headers", v)
	}
	out.RedactedFields = out.RedactedFields[:0]
	for f := range removed {
		out.RedactedFields = append(out.RedactedFields, f)
	}
	slices.Sort(out.RedactedFields)
	return out
}

// redactData returns data, an encoded Envelope, with its restricted values
// removed, and their paths; ok is false when data cannot be classified.
// The envelope is not validated: a dead letter's may be invalid.
func redactData(data []byte) (redacted []byte, removed []string, ok bool) {
	env := &eventv1.Envelope{}
	if proto.Unmarshal(data, env) != nil {
		return nil, nil, false
	}
	red, removed, err := event.RedactEnvelope(env)
	if err != nil {
		return nil, nil, false
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(red)
	if err != nil {
		return nil, nil, false
	}
	return b, removed, true
}
