package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	lagv1 "github.com/shopbus/shopbus/gen/go/shopbus/lag/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/lag/v1/lagv1connect"
)

// lagResponse is a sample with one stalled key-based group and one
// round-robin group that keeps up.
func lagResponse(now time.Time) *lagv1.ListConsumerLagResponse {
	return &lagv1.ListConsumerLagResponse{
		SampledAt: timestamppb.New(now.Add(-2 * time.Second)),
		Window:    durationpb.New(time.Minute),
		Consumers: []*lagv1.ConsumerLag{
			{
				Group: "audit", Stream: "ECOMMERCE_INVENTORY", Strategy: "round-robin", Status: lagv1.Status_STATUS_OK,
				Lag: 0, LagAge: durationpb.New(0), Rate: 12.34, Members: 1,
				Partitions: []*lagv1.PartitionLag{
					{Partition: "shared", Consumer: "audit", Status: lagv1.Status_STATUS_OK, Redelivered: 4, LagAge: durationpb.New(0)},
				},
			},
			{
				Group: "inventory-reserve-stock", Stream: "ECOMMERCE_ORDER", Strategy: "key-based", Status: lagv1.Status_STATUS_STALL,
				Lag: 15, LagAge: durationpb.New(3*time.Minute + 4*time.Second + 300*time.Millisecond), Rate: 0, Members: 2,
				Partitions: []*lagv1.PartitionLag{
					{Partition: "0", Consumer: "inventory-reserve-stock-p0", Owner: "a", Status: lagv1.Status_STATUS_OK, LagAge: durationpb.New(0)},
					{
						Partition: "1", Consumer: "inventory-reserve-stock-p1", Owner: "b", Status: lagv1.Status_STATUS_STALL,
						Pending: 12, AckPending: 1, Redelivered: 3, LagAge: durationpb.New(3*time.Minute + 4*time.Second + 300*time.Millisecond),
					},
					{
						Partition: "2", Consumer: "inventory-reserve-stock-p2", Status: lagv1.Status_STATUS_OK,
						Pending: 2, LagAge: durationpb.New(1234 * time.Millisecond),
					},
					{
						Partition: "3", Consumer: "inventory-reserve-stock-p3", Status: lagv1.Status_STATUS_ERR,
						Error: "consumer not found",
					},
				},
			},
		},
	}
}

// TestPrintLag: the header gives the sampling time and the window; the
// groups table has one row per group with its status, lag, age, rate and
// members; the partitions table lists those not OK or behind (a STALL with
// its counts, a lagging OK one, an ERR with its error) and leaves out the
// OK partitions with nothing to settle.
func TestPrintLag(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	if err := printLag(&out, lagResponse(now), now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for i, want := range [][]string{
		{"sampled ", "(2s ago)", " · status over the last 1m0s"},
		{},
		{"GROUP", "STREAM", "STRATEGY", "STATUS", "LAG", "LAG AGE", "RATE", "MEMBERS"},
		{"audit", "ECOMMERCE_INVENTORY", "round-robin", "OK", "0", "0s", "12.3/s", "1"},
		{"inventory-reserve-stock", "ECOMMERCE_ORDER", "key-based", "STALL", "15", "3m4s", "0.0/s", "2"},
		{},
		{"GROUP", "PARTITION", "CONSUMER", "OWNER", "STATUS", "PENDING", "ACK PENDING", "REDELIVERED", "LAG AGE", "ERROR"},
		{"inventory-reserve-stock", "1", "inventory-reserve-stock-p1", "b", "STALL", "12", "1", "3", "3m4s"},
		{"inventory-reserve-stock", "2", "inventory-reserve-stock-p2", "(none)", "OK", "2", "0", "0", "1.2s"},
		{"inventory-reserve-stock", "3", "inventory-reserve-stock-p3", "(none)", "ERR", "0", "0", "0", "-", "consumer not found"},
	} {
		if i >= len(lines) {
			t.Fatalf("output has %d lines, want more:\n%s", len(lines), out.String())
		}
		if len(want) == 0 && lines[i] != "" {
			t.Errorf("line %d %q: want it empty", i, lines[i])
		}
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q: no %q", i, lines[i], w)
			}
		}
		if strings.HasSuffix(lines[i], " ") {
			t.Errorf("line %d %q ends with spaces", i, lines[i])
		}
	}
	if len(lines) != 10 {
		t.Errorf("output has %d lines, want 10:\n%s", len(lines), out.String())
	}
	for _, absent := range []string{"inventory-reserve-stock-p0", "shared", "STATUS_"} {
		if strings.Contains(out.String(), absent) {
			t.Errorf("output has %q:\n%s", absent, out.String())
		}
	}
	// The columns line up: each row's status starts under STATUS.
	if col := strings.Index(lines[2], "STATUS"); strings.Index(lines[4], "STALL") != col {
		t.Errorf("STALL at column %d, STATUS at %d:\n%s", strings.Index(lines[4], "STALL"), col, out.String())
	}
}

// TestPrintLagQuiet: groups with nothing behind print no partitions table,
// and no groups at all say so.
func TestPrintLagQuiet(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	res := lagResponse(now)
	res.Consumers = res.Consumers[:1]
	var out bytes.Buffer
	if err := printLag(&out, res, now); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "PARTITION") || !strings.Contains(out.String(), "audit") {
		t.Errorf("all OK:\n%s", out.String())
	}

	out.Reset()
	res.Consumers = nil
	if err := printLag(&out, res, now); err != nil || !strings.HasSuffix(out.String(), "\nno consumer groups\n") {
		t.Errorf("no groups: %q, %v", out.String(), err)
	}
}

// TestLagAge: ages are rounded to what a table needs.
func TestLagAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    *durationpb.Duration
		want string
	}{
		{nil, "-"},
		{durationpb.New(0), "0s"},
		{durationpb.New(-time.Second), "0s"},
		{durationpb.New(42*time.Millisecond + 400*time.Microsecond), "42ms"},
		{durationpb.New(1234 * time.Millisecond), "1.2s"},
		{durationpb.New(59*time.Second + 400*time.Millisecond), "59.4s"},
		{durationpb.New(3*time.Minute + 4*time.Second + 600*time.Millisecond), "3m5s"},
		{durationpb.New(2*time.Hour + 5*time.Minute + 10*time.Second), "2h5m"},
		{durationpb.New(26 * time.Hour), "26h0m"},
	} {
		if got := lagAge(tc.d); got != tc.want {
			t.Errorf("lagAge(%v) = %q, want %q", tc.d.AsDuration(), got, tc.want)
		}
	}
}

// TestLagCmdArgs: more than one group, or a non-positive interval, are
// refused before any call.
func TestLagCmdArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", "http://127.0.0.1:1", "a", "b"}, "at most one group"},
		{[]string{"--url", "http://127.0.0.1:1", "--interval", "0s"}, "want a positive duration"},
		{[]string{"--url", "http://127.0.0.1:1", "--watch", "--interval", "-1s", "a"}, "want a positive duration"},
	} {
		err := lagCmd(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lag %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// fakeLag is a LagService answering with its replies in turn, the last one
// from then on; it records the groups asked for.
type fakeLag struct {
	mu      sync.Mutex
	replies []func() (*lagv1.ListConsumerLagResponse, error)
	asked   []string
}

var _ lagv1connect.LagServiceHandler = (*fakeLag)(nil)

// ListConsumerLag implements lagv1connect.LagServiceHandler.
func (f *fakeLag) ListConsumerLag(_ context.Context, req *connect.Request[lagv1.ListConsumerLagRequest]) (*connect.Response[lagv1.ListConsumerLagResponse], error) {
	f.mu.Lock()
	f.asked = append(f.asked, req.Msg.GetGroup())
	reply := f.replies[0]
	if len(f.replies) > 1 {
		f.replies = f.replies[1:]
	}
	f.mu.Unlock()
	res, err := reply()
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

// calls returns the groups asked for so far.
func (f *fakeLag) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// serveLag serves f over HTTP for the test's lifetime and returns its URL.
func serveLag(t *testing.T, f *fakeLag) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(lagv1connect.NewLagServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// unavailable is the gateway's answer before the monitor sampled.
func unavailable() (*lagv1.ListConsumerLagResponse, error) {
	return nil, connect.NewError(connect.CodeUnavailable, errors.New("the lag monitor has not sampled the consumers yet; retry"))
}

// notFound is the gateway's answer for an unknown group.
func notFound() (*lagv1.ListConsumerLagResponse, error) {
	return nil, connect.NewError(connect.CodeNotFound, errors.New("no such consumer group: \"nope\""))
}

// TestLagCmdErrors: without --watch, an unknown group and a monitor that
// has not sampled yet are errors with the gateway's code.
func TestLagCmdErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reply func() (*lagv1.ListConsumerLagResponse, error)
		code  connect.Code
	}{
		{notFound, connect.CodeNotFound},
		{unavailable, connect.CodeUnavailable},
	} {
		f := &fakeLag{replies: []func() (*lagv1.ListConsumerLagResponse, error){tc.reply}}
		err := lagCmd(context.Background(), []string{"--url", serveLag(t, f), "nope"})
		if connect.CodeOf(err) != tc.code {
			t.Errorf("lag nope: %v, want code %v", err, tc.code)
		}
		if asked := f.calls(); len(asked) != 1 || asked[0] != "nope" {
			t.Errorf("asked for %q, want [nope]", asked)
		}
	}
}

// TestWatchLag: --watch says when the gateway is unavailable and tries
// again, prints the lag when it answers, and ends on any other error.
func TestWatchLag(t *testing.T) {
	t.Parallel()
	now := time.Now()
	f := &fakeLag{replies: []func() (*lagv1.ListConsumerLagResponse, error){
		unavailable,
		func() (*lagv1.ListConsumerLagResponse, error) { return lagResponse(now), nil },
		notFound,
	}}
	client := lagv1connect.NewLagServiceClient(http.DefaultClient, serveLag(t, f))
	var out bytes.Buffer
	err := watchLag(context.Background(), &out, false, client, &lagv1.ListConsumerLagRequest{}, time.Millisecond)
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("watch ended with %v, want NotFound", err)
	}
	if n := len(f.calls()); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
	s := out.String()
	unavail, table := strings.Index(s, "unavailable, retrying: unavailable: the lag monitor has not sampled"), strings.Index(s, "inventory-reserve-stock")
	if unavail < 0 || table < unavail || strings.Count(s, "(Ctrl-C to stop)") != 2 || strings.Contains(s, "\033[") {
		t.Errorf("output:\n%s", s)
	}

	// Cancelled, it ends without an error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = &fakeLag{replies: []func() (*lagv1.ListConsumerLagResponse, error){unavailable}}
	client = lagv1connect.NewLagServiceClient(http.DefaultClient, serveLag(t, f))
	if err := watchLag(ctx, &out, false, client, &lagv1.ListConsumerLagRequest{}, time.Millisecond); err != nil {
		t.Errorf("cancelled: %v", err)
	}
}
