package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	deadletterv1 "github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1"
	"github.com/shopbus/shopbus/gen/go/shopbus/deadletter/v1/deadletterv1connect"
	eventv1 "github.com/shopbus/shopbus/gen/go/shopbus/event/v1"
	"github.com/shopbus/shopbus/internal/event"
)

// dlqSubcommands are the subcommands of shopbus dlq.
var dlqSubcommands = []string{"list", "show", "redrive", "discard"}

// dlq is the operator's view of the dead-letter queue, through the gateway's
// DeadLetterService.
func dlq(ctx context.Context, args []string) error {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && args[0] != "help" {
		sub, args = args[0], args[1:]
		if !slices.Contains(dlqSubcommands, sub) {
			return usagef("dlq", "unknown subcommand %q: want list, show, redrive or discard", sub)
		}
	} else if len(args) > 0 && args[0] == "help" {
		args = []string{"-h"}
	}
	fs := flag.NewFlagSet(strings.TrimSpace("dlq "+sub), flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "gateway base URL (env SHOPBUS_URL)")
	stream := fs.String("stream", "", "only dead letters from this stream (list, --all)")
	consumer := fs.String("consumer", "", "only dead letters of this consumer (list, --all)")
	eventType := fs.String("type", "", "only dead letters of this event type, e.g. order.created (list, --all)")
	reason := fs.String("reason", "", "only max_deliveries or terminated (list, --all)")
	limit := fs.Int("limit", 50, "list: how many to show, 1 to 500")
	all := fs.Bool("all", false, "redrive, discard: every dead letter matching the filters")
	reveal := fs.Bool("reveal", false, "show: include the personal and sensitive values, redacted by default (needs the admin role or token; the gateway logs each reveal)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shopbus dlq list [filters] | show [--reveal] ID | redrive ID... | redrive --all [filters] | discard ID... | discard --all [filters]\n"+
			"The gateway's admin token, if it has one, is read from SHOPBUS_ADMIN_TOKEN.\n")
		fs.PrintDefaults()
	}
	// Flags may come before or after the ids.
	var positional []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional, args = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	if sub == "" {
		return usagef("dlq", "name a subcommand: list, show, redrive or discard")
	}
	if err := checkURL("url", *url); err != nil {
		return usagef(fs.Name(), "%w", err)
	}
	filter := &deadletterv1.ListDeadLettersRequest{OriginalStream: *stream, Consumer: *consumer, EventType: *eventType}
	switch *reason {
	case "":
	case "max_deliveries":
		filter.Reason = deadletterv1.Reason_REASON_MAX_DELIVERIES
	case "terminated":
		filter.Reason = deadletterv1.Reason_REASON_TERMINATED
	default:
		return usagef(fs.Name(), "--reason %q: want max_deliveries or terminated", *reason)
	}
	ids, err := parseIDs(positional)
	if err != nil {
		return usagef(fs.Name(), "%w", err)
	}
	switch {
	case sub == "list" && len(positional) > 0:
		return usagef(fs.Name(), "unexpected arguments %v", positional)
	case sub == "list" && (*limit < 1 || *limit > 500):
		return usagef(fs.Name(), "--limit %d: want 1 to 500", *limit)
	case sub == "show" && len(ids) != 1:
		return usagef(fs.Name(), "name one dead letter id")
	case sub != "show" && *reveal:
		return usagef(fs.Name(), "--reveal: only dlq show reveals personal data")
	case (sub == "redrive" || sub == "discard") && *all == (len(ids) > 0):
		return usagef(fs.Name(), "name dead letter ids, or --all with filters (not both)")
	}
	adminOpts, err := adminClientOptions()
	if err != nil {
		return err
	}
	client := deadletterv1connect.NewDeadLetterServiceClient(http.DefaultClient, *url, adminOpts...)
	switch sub {
	case "list":
		return dlqList(ctx, client, filter, *limit)
	case "show":
		res, err := client.GetDeadLetter(ctx, connect.NewRequest(&deadletterv1.GetDeadLetterRequest{Id: ids[0], RevealPersonal: *reveal}))
		if err != nil {
			return err
		}
		return dlqShow(res.Msg.GetDeadLetter())
	default: // redrive, discard
		if *all {
			if ids, err = matching(ctx, client, filter); err != nil {
				return err
			}
		}
		return dlqChange(ctx, client, sub, ids)
	}
}

func parseIDs(args []string) ([]uint64, error) {
	var ids []uint64
	for _, a := range args {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%q is not a dead letter id (a positive number from dlq list)", a)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func dlqList(ctx context.Context, client deadletterv1connect.DeadLetterServiceClient, filter *deadletterv1.ListDeadLettersRequest, limit int) error {
	filter.PageSize = uint32(limit)
	res, err := client.ListDeadLetters(ctx, connect.NewRequest(filter))
	if err != nil {
		return err
	}
	st := res.Msg.GetStats()
	fmt.Printf("dead-letter queue: %d messages, %d bytes of %d, kept %v\n", st.GetMessages(), st.GetBytes(), st.GetMaxBytes(),
		time.Duration(st.GetMaxAgeSeconds())*time.Second)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tFROM\tCONSUMER\tEVENT\tDELIVERIES\tREASON\tFAILED AT\tERROR")
	for _, dl := range res.Msg.GetDeadLetters() {
		fmt.Fprintf(w, "%d\t%s#%d\t%s\t%s\t%d\t%s\t%s\t%s\n", dl.GetId(), printable(dl.GetOriginalStream()), dl.GetOriginalSequence(),
			printable(dl.GetConsumer()), printable(eventName(dl)), dl.GetDeliveries(), reasonName(dl.GetReason()),
			dl.GetFailedAt().AsTime().Format(time.RFC3339), printable(truncateText(dl.GetError(), 80)))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if res.Msg.GetNextAfterId() != 0 {
		fmt.Printf("(more after id %d)\n", res.Msg.GetNextAfterId())
	}
	return nil
}

func dlqShow(dl *deadletterv1.DeadLetter) error {
	meta := proto.CloneOf(dl)
	meta.Data = nil
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(meta)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n", printable(string(b), '\n'))
	if f := dl.GetRedactedFields(); len(f) > 0 {
		fmt.Printf("redacted (personal or sensitive): %s; dlq show --reveal shows them (admin)\n", printable(strings.Join(f, ", ")))
	}
	if dl.GetDataWithheld() {
		fmt.Println("data withheld: it is not an event of the catalog, so its fields cannot be classified; dlq show --reveal shows it (admin)")
		return nil
	}
	// Not validated: a dead letter's event may break its rules, and a
	// redacted one lacks its required personal fields.
	if msg, spec, ok := openUnchecked(dl.GetData()); ok {
		p, _ := protojson.MarshalOptions{Multiline: true}.Marshal(msg)
		fmt.Printf("payload (%s):\n%s\n", spec, printable(string(p), '\n'))
		return nil
	}
	fmt.Printf("data (%d bytes, not a shopbus event): %q\n", len(dl.GetData()), truncateText(string(dl.GetData()), 2000))
	return nil
}

// openUnchecked decodes data, an encoded Envelope, and its payload, without
// validating either.
func openUnchecked(data []byte) (proto.Message, event.Spec, bool) {
	env := &eventv1.Envelope{}
	if len(data) == 0 || proto.Unmarshal(data, env) != nil {
		return nil, event.Spec{}, false
	}
	spec, err := event.Lookup(env.GetType(), env.GetVersion())
	if err != nil {
		return nil, event.Spec{}, false
	}
	msg := spec.Message.New().Interface()
	if proto.Unmarshal(env.GetPayload(), msg) != nil {
		return nil, event.Spec{}, false
	}
	return msg, spec, true
}

func matching(ctx context.Context, client deadletterv1connect.DeadLetterServiceClient, filter *deadletterv1.ListDeadLettersRequest) ([]uint64, error) {
	var ids []uint64
	filter.PageSize = 500
	for {
		res, err := client.ListDeadLetters(ctx, connect.NewRequest(filter))
		if err != nil {
			return nil, err
		}
		for _, dl := range res.Msg.GetDeadLetters() {
			ids = append(ids, dl.GetId())
		}
		if res.Msg.GetNextAfterId() == 0 {
			return ids, nil
		}
		filter.AfterId = res.Msg.GetNextAfterId()
	}
}

func dlqChange(ctx context.Context, client deadletterv1connect.DeadLetterServiceClient, verb string, ids []uint64) error {
	done := map[string]string{"redrive": "redriven", "discard": "discarded"}[verb]
	failed := 0
	for chunk := range slices.Chunk(ids, 1000) {
		var results []*deadletterv1.Result
		if verb == "redrive" {
			res, err := client.RedriveDeadLetters(ctx, connect.NewRequest(&deadletterv1.RedriveDeadLettersRequest{Ids: chunk}))
			if err != nil {
				return err
			}
			results = res.Msg.GetResults()
		} else {
			res, err := client.DiscardDeadLetters(ctx, connect.NewRequest(&deadletterv1.DiscardDeadLettersRequest{Ids: chunk}))
			if err != nil {
				return err
			}
			results = res.Msg.GetResults()
		}
		for _, r := range results {
			switch {
			case !r.GetOk():
				failed++
				fmt.Printf("%d: not %s: %s\n", r.GetId(), done, r.GetError())
			case verb == "redrive":
				fmt.Printf("%d: redriven (now stream sequence %d)\n", r.GetId(), r.GetNewSequence())
			default:
				fmt.Printf("%d: discarded\n", r.GetId())
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("dlq %s: %d of %d failed", verb, failed, len(ids))
	}
	fmt.Printf("%d dead letters %s\n", len(ids), done)
	return nil
}

func eventName(dl *deadletterv1.DeadLetter) string {
	if dl.GetEventType() == "" {
		return "-"
	}
	return fmt.Sprintf("%s.v%d", dl.GetEventType(), dl.GetEventVersion())
}

func reasonName(r deadletterv1.Reason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "REASON_"))
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// printable escapes what a terminal would act on instead of showing:
// control characters (C0, DEL, C1: escape sequences start with ESC or
// CSI), except the ones in keep, become \uXXXX. A dead letter's text comes
// from whoever published the message.
func printable(s string, keep ...rune) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) && !slices.Contains(keep, r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
