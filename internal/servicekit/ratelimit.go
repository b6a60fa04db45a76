package servicekit

import (
	"fmt"
	"time"
)

// RateLimitedError is a refusal of a caller that goes faster than its
// limit, with the wait before it may try again. Errors.Connect returns it
// as ResourceExhausted with a RetryInfo detail and a Retry-After header.
type RateLimitedError struct {
	// Err says who was limited; it wraps the service's domain error.
	Err error
	// RetryAfter is the wait before the caller may try again.
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("%v; retry in %v", e.Err, e.RetryAfter.Round(time.Millisecond))
}

// Unwrap returns Err, so that errors.Is matches the domain error.
func (e *RateLimitedError) Unwrap() error { return e.Err }
