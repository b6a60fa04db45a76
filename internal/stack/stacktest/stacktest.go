// Package stacktest runs a shopbus stack for a test: started, serving, and
// stopped gracefully at the test's cleanup. Tests only.
package stacktest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopbus/shopbus/internal/stack"
)

// Run starts a stack with cfg and runs it until the test ends; then it
// stops it gracefully (within 30 s, or the test fails) and closes it.
func Run(t testing.TB, cfg stack.Config) *stack.Stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("stack.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the stack did not stop within 30s")
		}
		s.Close()
	})
	return s
}
