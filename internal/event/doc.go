// Package event builds, encodes, decodes and validates shopbus events: protobuf
// messages carried in the shared Envelope (proto/shopbus/event/v1).
//
// An event's name and version come from its proto definition: the message
// option (shopbus.event.v1.event).name gives "<entity>.<action>", and the
// major version of its package (ecommerce.order.v1) gives the version. From
// those, one rule derives everything else (see Spec):
//
//	proto package   <domain>.<context>.v<N>          ecommerce.order.v1
//	type            <entity>.<action>                order.created
//	NATS subject    <domain>.<entity>.<action>.v<N>  ecommerce.order.created.v1
//	JSON Schema     event-contracts/<domain>/<context>/<entity>.<action>.v<N>.json
//
// New wraps a typed event in a validated Envelope; Encode and Decode turn it
// into bytes and back; Open decodes the payload by dispatching on type and
// version; Latest also upcasts an old version to the newest one; Headers
// gives the NATS headers that mirror the envelope.
//
// Validation means protovalidate's rules, and encoding means protobuf-go's
// (deterministic), on every event at both ends: there is no second
// implementation of either (docs/adr/010-no-event-fast-path.md).
package event
