// Package valid is the runtime of the IsValid methods that
// tools/protoc-gen-shopbus-valid generates for event messages and the
// envelope: a UUID check, a pattern matcher that agrees with Go's regexp, and
// a call into protovalidate for message-level (CEL) rules.
//
// IsValid is a fast path, not a second authority. It reports whether a
// message satisfies its protovalidate rules without protovalidate's per-field
// reflection; when it reports false, the caller runs protovalidate, which
// names the violations. The tests in internal/event hold the two to the same
// answer on every event.
package valid
