package messaging

import (
	"context"
	"fmt"
	"runtime/debug"
)

// call runs a handler, turning a panic into an error wrapping ErrPanic
// (logged with its stack) instead of a crash of the process. The panic's
// value is not logged here: it may quote the event, and the error that
// carries it is logged, scrubbed, by whoever settles the event.
func (s *settler) call(ctx context.Context, h func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			s.log.Error("consumer: handler panicked; recovered, retrying as a transient failure", "stack", string(stack))
			err = fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	return h(ctx)
}
