package event

// Unmarshal exposes unmarshal to the tests of the fast path.
var Unmarshal = unmarshal
