package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	lagv1 "github.com/shopbus/shopbus/gen/go/shopbus/lag/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/lag/v1/lagv1connect"
)

// lagCmd is the operator's view of how far behind each consumer group is,
// through the gateway's LagService: per group its lag in events and in
// seconds, its settle rate and its Burrow-style status, and the partitions
// that are behind or unwell; with --watch, refreshed until interrupted.
func lagCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lag", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "gateway base URL (env SHOPBUS_URL)")
	watch := fs.Bool("watch", false, "refresh every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch refreshes")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shopbus lag [flags] [GROUP]\n"+
			"Shows each consumer group's lag (or the group GROUP's, its durable consumer name):\n"+
			"events not yet settled, the age of the oldest, the settle rate and the status\n"+
			"(OK, WARN, STALL, STOP, ERR) over the gateway's window, and the partitions behind.\n"+
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
		return usagef("lag", "name at most one group, not %v", fs.Args())
	}
	if *interval <= 0 {
		return usagef("lag", "--interval %v: want a positive duration", *interval)
	}
	if err := checkURL("url", *url); err != nil {
		return usagef("lag", "%w", err)
	}
	adminOpts, err := adminClientOptions()
	if err != nil {
		return err
	}
	client := lagv1connect.NewLagServiceClient(http.DefaultClient, *url, adminOpts...)
	req := &lagv1.ListConsumerLagRequest{Group: fs.Arg(0)}
	if !*watch {
		res, err := client.ListConsumerLag(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return printLag(os.Stdout, res.Msg, time.Now())
	}
	return watchLag(ctx, os.Stdout, isTerminal(os.Stdout), client, req, *interval)
}

// watchLag prints the lag to out every interval until ctx is done, clearing
// the screen first when redraw is set. While the gateway or NATS is
// unavailable (or the monitor has not sampled yet) it says so and keeps
// trying; any other error (a missing token, an unknown group) ends it.
func watchLag(ctx context.Context, out io.Writer, redraw bool, client lagv1connect.LagServiceClient, req *lagv1.ListConsumerLagRequest, interval time.Duration) error {
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
		res, err := client.ListConsumerLag(callCtx, connect.NewRequest(req))
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if err := printLag(&buf, res.Msg, now); err != nil {
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
		if _, err := out.Write(buf.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// printLag writes a header line with when the monitor sampled (and how long
// before now) and the window statuses are judged over; a table with one row
// per consumer group; and, when any, a table of the partitions that are not
// OK or have events not yet settled, with their counts, age and error.
func printLag(out io.Writer, res *lagv1.ListConsumerLagResponse, now time.Time) error {
	header := "sampled -"
	if ts := res.GetSampledAt(); ts != nil {
		at := ts.AsTime()
		header = fmt.Sprintf("sampled %s (%v ago)", at.Local().Format(time.TimeOnly), max(now.Sub(at), 0).Truncate(time.Second))
	}
	if w := res.GetWindow(); w != nil {
		header += fmt.Sprintf(" · status over the last %v", w.AsDuration())
	}
	if _, err := fmt.Fprintln(out, header); err != nil {
		return err
	}
	consumers := res.GetConsumers()
	if len(consumers) == 0 {
		_, err := fmt.Fprintln(out, "no consumer groups")
		return err
	}

	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "GROUP\tSTREAM\tSTRATEGY\tSTATUS\tLAG\tLAG AGE\tRATE\tMEMBERS")
	for _, c := range consumers {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%.1f/s\t%d\n", c.GetGroup(), c.GetStream(), c.GetStrategy(),
			statusName(c.GetStatus()), c.GetLag(), lagAge(c.GetLagAge()), c.GetRate(), c.GetMembers())
	}
	// Each table is flushed on its own, so its columns fit its cells.
	if err := w.Flush(); err != nil {
		return err
	}

	first := true
	for _, c := range consumers {
		for _, p := range c.GetPartitions() {
			if p.GetStatus() == lagv1.Status_STATUS_OK && p.GetPending()+p.GetAckPending() == 0 {
				continue
			}
			if first {
				fmt.Fprintln(w)
				fmt.Fprintln(w, "GROUP\tPARTITION\tCONSUMER\tOWNER\tSTATUS\tPENDING\tACK PENDING\tREDELIVERED\tLAG AGE\tERROR")
				first = false
			}
			owner := p.GetOwner()
			switch {
			case owner != "":
			case c.GetStrategy() == "round-robin":
				owner = "(any)"
			default:
				owner = "(none)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", c.GetGroup(), p.GetPartition(), p.GetConsumer(), owner,
				statusName(p.GetStatus()), p.GetPending(), p.GetAckPending(), p.GetRedelivered(), lagAge(p.GetLagAge()), p.GetError())
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// The ERROR column is mostly empty: drop the padding it leaves behind.
	for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if _, err := fmt.Fprintln(out, strings.TrimRight(l, " ")); err != nil {
			return err
		}
	}
	return nil
}

// statusName is s without its STATUS_ prefix: OK, WARN, STALL, STOP or ERR
// ("?" when unspecified).
func statusName(s lagv1.Status) string {
	if s == lagv1.Status_STATUS_UNSPECIFIED {
		return "?"
	}
	return strings.TrimPrefix(s.String(), "STATUS_")
}

// lagAge formats a lag in seconds for a table: tenths of a second under a
// minute (1.2s), whole seconds under an hour (3m4s), then whole minutes
// (2h5m); "-" when it is not known.
func lagAge(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	switch age := d.AsDuration(); {
	case age <= 0:
		return "0s"
	case age < 100*time.Millisecond:
		return age.Round(time.Millisecond).String()
	case age < time.Minute:
		return age.Round(100 * time.Millisecond).String()
	case age < time.Hour:
		return age.Round(time.Second).String()
	default:
		return strings.TrimSuffix(age.Round(time.Minute).String(), "0s")
	}
}
