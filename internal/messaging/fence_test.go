package messaging_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopbus/shopbus/internal/messaging"
	"github.com/shopbus/shopbus/internal/testenv"
)

// stalledOwnerEnv, set to a NATS URL, makes TestStalledOwnerIsFenced's
// binary the stalled owner: a process the test stops with SIGSTOP.
const stalledOwnerEnv = "SHOPBUS_TEST_STALLED_OWNER"

// fenceConfig is the key-based consumer of TestStalledOwnerIsFenced: one
// partition, a 2s lease.
func fenceConfig(instance string) messaging.ConsumerConfig {
	return messaging.ConsumerConfig{Stream: workloadStream, Durable: "test-fence", Subjects: []string{"iot.telemetry.raw"},
		Strategy: messaging.KeyBased, Lease: 2 * time.Second, Instance: instance}
}

// TestStalledOwnerIsFenced: an owner that stalls (a process stopped with
// SIGSTOP) loses its partition when its lease expires, and once it runs
// again it is delivered nothing more: JetStream pins the partition's
// durable to its new owner, whose takeover unpinned the stalled one, and
// the stalled owner's pull requests expired before its lease did. Events
// are published after the takeover while it is stopped and again as it
// wakes; every one is handled by the new owner, none by the stalled one.
func TestStalledOwnerIsFenced(t *testing.T) {
	if url := os.Getenv(stalledOwnerEnv); url != "" {
		runStalledOwner(url)
		return
	}
	t.Parallel()
	w := newWorkload(t, messaging.KeyBased, 1)
	ctx := context.Background()

	// The owner, in a process of its own ("z-…": it sorts after the new
	// owner, so the group's balance never hands the partition back to it).
	cmd := exec.Command(os.Args[0], "-test.run=^TestStalledOwnerIsFenced$")
	cmd.Env = append(os.Environ(), stalledOwnerEnv+"="+w.srv.ClientURL())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	stalled := &handled{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if seq, ok := strings.CutPrefix(sc.Text(), "handled "); ok {
				n, _ := strconv.ParseUint(seq, 10, 64)
				stalled.add(n)
			}
		}
		exited <- cmd.Wait()
	}()

	before := w.publish(ctx, 20)
	stalled.await(t, 1, before)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	successor := &handled{}
	nc, err := nats.Connect(w.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := messaging.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- messaging.ConsumeBatch(cctx, js, fenceConfig("a-successor"), successor.handler(), w.log)
	}()
	defer func() { cancel(); <-done }()

	// Once the owner's lease has expired, the successor takes the
	// partition and handles the events published since the owner stopped:
	// a first one, delivered to the stopped owner if its pull request was
	// still waiting (it owned the partition then), and again to the
	// successor, which starts after the last event settled.
	probe := w.publish(ctx, 1)
	successor.await(t, before+1, probe)
	// Published while the owner is stopped, after the takeover.
	whileStopped := w.publish(ctx, 200)
	successor.await(t, probe+1, whileStopped)

	// Published as it wakes: nats.go sends its pull requests again before
	// it learns that its lease is gone.
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var afterWake uint64
	for range 50 { // a few at a time, to span its waking
		afterWake = w.publish(ctx, 4)
	}
	successor.await(t, whileStopped+1, afterWake)

	// A graceful stop: whatever was delivered to it is handled first.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("the stalled owner's process: %v", err)
	}
	exited <- nil // for the cleanup
	if late := stalled.after(probe); len(late) > 0 {
		t.Errorf("the stalled owner handled %d events published after it lost the partition (stream sequences %v), want none", len(late), late[:min(len(late), 10)])
	}
}

// TestPartitionPinFencesThePreviousOwner: a partition's durable delivers
// to its pinned client only. Once a new owner unpins the previous one, the
// previous owner's pull requests are refused (a pin mismatch), and those
// nats.go sends again, without a pin, get nothing while the new owner is
// pinned, though both wait on the durable as every event is published.
func TestPartitionPinFencesThePreviousOwner(t *testing.T) {
	t.Parallel()
	w := newWorkload(t, messaging.KeyBased, 1)
	ctx := context.Background()
	cfg := fenceConfig("test")
	cfg.Lease = 5 * time.Second
	cc := messaging.DurableConfig(cfg, 0)
	cons, err := w.js.CreateOrUpdateConsumer(ctx, workloadStream, cc)
	if err != nil {
		t.Fatal(err)
	}
	owner := func() *handled {
		nc, err := nats.Connect(w.srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := messaging.NewJetStream(nc)
		if err != nil {
			t.Fatal(err)
		}
		c, err := js.Consumer(ctx, workloadStream, cc.Durable)
		if err != nil {
			t.Fatal(err)
		}
		it, err := messaging.PartitionMessages(c, 10)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(it.Stop)
		h := &handled{}
		go func() {
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if err != nil {
					continue // the pin mismatch, after the unpin
				}
				meta, err := msg.Metadata()
				if err != nil {
					t.Error(err)
					return
				}
				h.add(meta.Sequence.Stream)
				_ = msg.Ack()
			}
		}()
		return h
	}
	previous := owner()
	first := w.publish(ctx, 1)
	previous.await(t, first, first)

	messaging.Unpin(ctx, w.js, workloadStream, cc, w.log)
	next := owner()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumWaiting < 2 {
			return fmt.Errorf("%d pull requests waiting, want both owners'", info.NumWaiting)
		}
		return nil
	})
	last := w.publish(ctx, 50)
	next.await(t, first+1, last)
	if late := previous.after(first); len(late) > 0 {
		t.Errorf("the previous owner was delivered %d events after the unpin (stream sequences %v), want none", len(late), late)
	}
}

// runStalledOwner is the owner's process: it consumes until SIGTERM,
// printing the stream sequence of each event it handles.
func runStalledOwner(url string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	js, err := messaging.NewJetStream(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	err = messaging.ConsumeBatch(ctx, js, fenceConfig("z-stalled"), func(_ context.Context, batch []*messaging.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range batch {
			fmt.Printf("handled %d\n", d.Metadata.Sequence.Stream)
		}
		return nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	nc.Close()
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// handled records the stream sequences an owner handled.
type handled struct {
	mu   sync.Mutex
	seqs map[uint64]bool
}

func (h *handled) add(seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seqs == nil {
		h.seqs = map[uint64]bool{}
	}
	h.seqs[seq] = true
}

func (h *handled) handler() messaging.BatchHandler {
	return func(_ context.Context, batch []*messaging.Delivery) error {
		for _, d := range batch {
			h.add(d.Metadata.Sequence.Stream)
		}
		return nil
	}
}

// await waits until every sequence from first to last is handled.
func (h *handled) await(t *testing.T, first, last uint64) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		for seq := first; seq <= last; seq++ {
			if !h.seqs[seq] {
				return fmt.Errorf("stream sequence %d not handled (of %d to %d)", seq, first, last)
			}
		}
		return nil
	})
}

// after returns the handled sequences above seq, sorted.
func (h *handled) after(seq uint64) []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var late []uint64
	for s := range h.seqs {
		if s > seq {
			late = append(late, s)
		}
	}
	slices.Sort(late)
	return late
}
