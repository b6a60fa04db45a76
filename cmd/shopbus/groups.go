package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	groupv1 "github.com/shopbus/shopbus/gen/go/shopbus/group/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/group/v1/groupv1connect"
)

// groups is the operator's view of the consumer groups, through the
// gateway's GroupService: each group, its members, and per partition the
// owner and the backlog; with --watch, refreshed until interrupted.
func groups(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("groups", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "gateway base URL (env SHOPBUS_URL)")
	watch := fs.Bool("watch", false, "refresh every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch refreshes")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shopbus groups [flags] [NAME]\n"+
			"Lists the consumer groups (or the group NAME, its durable consumer name).\n"+
			"The gateway's admin token, if it has one, is read from SHOPBUS_ADMIN_TOKEN.\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("groups", "name at most one group, not %v", fs.Args())
	}
	if *interval <= 0 {
		return usagef("groups", "--interval %v: want a positive duration", *interval)
	}
	if err := checkURL("url", *url); err != nil {
		return usagef("groups", "%w", err)
	}
	adminOpts, err := adminClientOptions()
	if err != nil {
		return err
	}
	client := groupv1connect.NewGroupServiceClient(http.DefaultClient, *url, adminOpts...)
	req := &groupv1.ListGroupsRequest{Name: fs.Arg(0)}
	if !*watch {
		res, err := client.ListGroups(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return printGroups(os.Stdout, res.Msg.GetGroups(), time.Now())
	}
	return watchGroups(ctx, client, req, *interval)
}

// watchGroups prints the groups every interval until ctx is done. While the
// gateway or NATS is unavailable it says so and keeps trying; any other
// error (a missing token, an unknown group) ends it.
func watchGroups(ctx context.Context, client groupv1connect.GroupServiceClient, req *groupv1.ListGroupsRequest, interval time.Duration) error {
	redraw := isTerminal(os.Stdout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		var buf bytes.Buffer
		if redraw {
			buf.WriteString("\033[H\033[2J")
		}
		now := time.Now()
		fmt.Fprintf(&buf, "every %v, %s (Ctrl-C to stop)\n\n", interval, now.Format(time.DateTime))
		callCtx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
		res, err := client.ListGroups(callCtx, connect.NewRequest(req))
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if err := printGroups(&buf, res.Msg.GetGroups(), now); err != nil {
				return err
			}
		case retryable(err):
			fmt.Fprintf(&buf, "unavailable, retrying: %v\n", err)
		default:
			return err
		}
		if !redraw {
			buf.WriteString("\n")
		}
		if _, err := os.Stdout.Write(buf.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// retryable reports whether a ListGroups error may pass by itself: the
// gateway or NATS is unreachable, or slow.
func retryable(err error) bool {
	code := connect.CodeOf(err)
	return code == connect.CodeUnavailable || code == connect.CodeDeadlineExceeded
}

// printGroups writes one block per group: a header line, its members, and
// its partitions with owner, pending, ack pending and redelivered counts.
// Times are shown with their age at now.
func printGroups(out io.Writer, groups []*groupv1.Group, now time.Time) error {
	if len(groups) == 0 {
		_, err := fmt.Fprintln(out, "no consumer groups")
		return err
	}
	// Each table is flushed on its own, so its columns fit its cells.
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "GROUP %s  stream %s  %s  %d %s\n", g.GetName(), g.GetStream(), strategyName(g.GetStrategy()),
			len(g.GetMembers()), plural(len(g.GetMembers()), "member", "members"))
		if len(g.GetMembers()) > 0 {
			fmt.Fprintln(w, "  INSTANCE\tHOST\tPID\tSINCE")
			for _, m := range g.GetMembers() {
				fmt.Fprintf(w, "  %s\t%s\t%d\t%s\n", m.GetInstance(), m.GetHost(), m.GetPid(), since(m.GetSince(), now))
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintln(w, "  PARTITION\tCONSUMER\tOWNER\tOWNER SINCE\tPENDING\tACK PENDING\tREDELIVERED")
		for _, p := range g.GetPartitions() {
			partition, consumer, owner := strconv.Itoa(int(p.GetPartition())), p.GetConsumer(), p.GetOwner()
			if p.GetPartition() < 0 {
				partition = "shared"
			}
			if p.GetMissing() {
				consumer += " (missing)"
			}
			switch {
			case owner != "":
			case g.GetStrategy() == groupv1.Strategy_STRATEGY_ROUND_ROBIN:
				owner = "(any)"
			default:
				owner = "(none)"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\n", partition, consumer, owner,
				since(p.GetOwnerSince(), now), p.GetPending(), p.GetAckPending(), p.GetRedelivered())
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func strategyName(s groupv1.Strategy) string {
	switch s {
	case groupv1.Strategy_STRATEGY_ROUND_ROBIN:
		return "round-robin"
	case groupv1.Strategy_STRATEGY_KEY_BASED:
		return "key-based"
	}
	return "unknown strategy"
}

// since formats ts with its age at now, or "-" when it is not known.
func since(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	t := ts.AsTime()
	return fmt.Sprintf("%s (%v ago)", t.Local().Format(time.DateTime), max(now.Sub(t), 0).Truncate(time.Second))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// isTerminal reports whether f is a terminal, where --watch redraws the
// screen instead of appending.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
