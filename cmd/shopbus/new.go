package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/shopbus/shopbus/internal/newservice"
)

// newCmd is `shopbus new service <domain>/<context>`: it generates a bounded
// context into the repository at --dir (internal/newservice), then says
// what to run next.
func newCmd(_ context.Context, args []string) error {
	switch {
	case len(args) > 0 && args[0] == "service":
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help"):
		args = []string{"service", "-h"}
	case len(args) > 0 && strings.HasPrefix(args[0], "-"):
		args = append([]string{"service"}, args...) // flags: the flag parser names a wrong one
	default:
		return usagef("new", "want: shopbus new service <domain>/<context>")
	}
	fs := flag.NewFlagSet("new service", flag.ContinueOnError)
	dir := fs.String("dir", ".", "the repository's root")
	adopt := fs.Bool("adopt", false, "build the service on the contract that event-contracts/<domain>/<context> already holds")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shopbus new service [--dir DIR] [--adopt] <domain>/<context>\n"+
			"Generates the contract, RPC API, service, migration, test and wiring of a bounded context (each name 2 to 20 lower-case letters);\n"+
			"with --adopt, everything but the contract, for a contract that exists.\n")
		fs.PrintDefaults()
	}
	rest := slices.Clone(args[1:])
	var spec string
	for i, a := range rest {
		if len(a) > 0 && a[0] != '-' && (i == 0 || rest[i-1] != "--dir") {
			spec = a
			rest = slices.Delete(rest, i, i+1)
			break
		}
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if spec == "" || fs.NArg() > 0 {
		return usagef("new service", "name one service: <domain>/<context>")
	}
	generate := newservice.Generate
	if *adopt {
		generate = newservice.Adopt
	}
	written, err := generate(*dir, spec)
	if errors.Is(err, newservice.ErrBadName) || errors.Is(err, newservice.ErrExists) {
		return usagef("new service", "%v", err)
	}
	if err != nil {
		return err
	}
	slices.Sort(written)
	for _, f := range written {
		fmt.Println(f)
	}
	fmt.Println("next: make generate && make lint && go test ./services/... ./event-contracts/ ./gateway/")
	return nil
}
