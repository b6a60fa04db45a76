package event

// The codec's internals, for the tests of the fast path.
var (
	Marshal   = marshal
	Unmarshal = unmarshal
)
