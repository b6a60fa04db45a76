package event

import "errors"

// Errors returned by this package. They are permanent: retrying the same
// bytes can never succeed, so a consumer sends such a message to the
// dead-letter queue instead of retrying it. Match them with errors.Is.
var (
	// ErrMalformed means the bytes are not a protobuf Envelope or payload.
	ErrMalformed = errors.New("malformed event")
	// ErrInvalid means an envelope or payload broke its validation rules.
	ErrInvalid = errors.New("invalid event")
	// ErrUnknownType means no event in the catalog has the envelope's type
	// and version.
	ErrUnknownType = errors.New("unknown event type")
	// ErrNotEvent means a message has no (shopbus.event.v1.event) option, or
	// its package does not follow the naming rule.
	ErrNotEvent = errors.New("not an event")
	// ErrWrongSource means an envelope's source is not the producer its
	// event declares (Spec.Producer): someone else published it.
	ErrWrongSource = errors.New("event from a source that does not produce it")
)

// ErrUngoverned means an event contract leaves a governance declaration
// out: its owner, its retention, or the classification of a field
// (Spec.GovernanceErrors). It is a contract author's mistake, found by the
// catalog's tests and by the catalog generator, never at run time.
var ErrUngoverned = errors.New("ungoverned event contract")
