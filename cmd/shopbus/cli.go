package main

// The command line is the standard library's flag package with the small
// dispatcher of this file. A CLI library (cobra, urfave/cli) would give
// sub-command help for free, but shopbus has few commands with plain
// flags, and what matters most here would still be ours to write: each
// flag's environment fallback parsed by the flag's own parser, a
// malformed variable named as an error instead of ignored, exit status 2
// for any misuse, and secrets never printed by -h.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/shopbus/shopbus/internal/postgres"
)

// command is one of shopbus's commands.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string) error
}

// commands are shopbus's commands, in the order usage lists them.
var commands = []command{
	{"dev", "[flags]", "run everything in one process (quick start)", dev},
	{"serve", "gateway|order|inventory|fraud [flags]", "run one component against external NATS and PostgreSQL", serve},
	{"bench", "[flags]", "measure CreateOrder → CONFIRMED against a running gateway", bench},
	{"bench-iot", "[flags]", "measure telemetry ingestion and rollups against a running gateway", benchIoT},
	{"dlq", "list|show|redrive|discard [flags]", "the dead-letter queue, through a running gateway", dlq},
	{"groups", "[--watch] [NAME]", "the consumer groups: members, partition owners, backlog", groups},
	{"lag", "[--watch] [GROUP]", "consumer lag in events and seconds, and Burrow-style status", lagCmd},
	{"healthcheck", "[--url URL]", "exit 0 when a component is ready (a container's health check)", healthcheck},
	{"new", "service <domain>/<context>", "generate a new bounded context: contract, service, migration, test, wiring", newCmd},
}

// run runs the command args name (os.Args[1:]) and returns the process's
// exit status: 0 when it succeeded or printed the help asked for, 1 when
// it failed, 2 when it was called wrongly (a usageError).
func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	name, rest := args[0], args[1:]
	if isHelp(name) {
		// "shopbus help CMD [SUB]" is "shopbus CMD [SUB] -h".
		if len(rest) == 0 || isHelp(rest[0]) {
			usage(os.Stdout)
			return 0
		}
		name, rest = rest[0], append(slices.Clone(rest[1:]), "-h")
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return exitStatus(&usageError{err: fmt.Errorf("unknown command %q", name)})
	}
	return exitStatus(commands[i].run(ctx, rest))
}

// exitStatus reports err on stderr and returns the exit status it means.
func exitStatus(err error) int {
	var misuse *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &misuse):
		fmt.Fprintf(os.Stderr, "shopbus: %v\nRun \"shopbus %s\" for usage.\n", err, strings.TrimSpace("help "+misuse.cmd))
		return 2
	case errors.Is(err, postgres.ErrUnavailable):
		fmt.Fprintf(os.Stderr, "shopbus: %v\n\nPostgreSQL is not reachable. Start it, or point shopbus at one with\n"+
			"DATABASE_URL (or --database-url), for example\n  DATABASE_URL=postgres://user:password@host:5432/shopbus shopbus dev\n", err)
	default:
		fmt.Fprintf(os.Stderr, "shopbus: %v\n", err)
	}
	return 1
}

// usage prints the commands to w.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-46s %s\n", "shopbus "+c.name+" "+c.args, c.summary)
	}
	fmt.Fprint(w, "\nRun \"shopbus help <command>\" (or \"shopbus <command> -h\") for the flags of a command.\n")
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// usageError is a command called wrongly: an unknown command, subcommand,
// flag or argument, or a value that a flag, or the environment variable
// it falls back to, cannot take. shopbus exits 2 on it.
type usageError struct {
	// cmd is the command called wrongly ("serve order"), for the hint
	// that follows the message.
	cmd string
	err error
}

// Error implements error.
func (e *usageError) Error() string { return e.err.Error() }

// Unwrap returns the cause.
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError of the command cmd.
func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(cmd+": "+format, args...)}
}

// parse parses args into fs, whose name is the command ("serve order"),
// gives each flag not on the command line the value of its environment
// variable when that is set (applyEnv), and refuses positional arguments.
// -h or --help prints the usage on stdout and returns flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) error {
	return parseWith(fs, args, os.LookupEnv)
}

// parseWith is parse with the environment read through lookup.
func parseWith(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shopbus %s [flags]\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef(fs.Name(), "unexpected arguments %s", strings.Join(fs.Args(), " "))
	}
	return applyEnv(fs, lookup)
}

// parseFlags parses args into fs, leaving positional arguments in
// fs.Args(). -h or --help prints fs.Usage on stdout and returns
// flag.ErrHelp; an unknown flag or a value a flag cannot take is a
// usageError naming it. It does not read the environment: call applyEnv
// once every argument is parsed.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = os.Stdout.Write(out.Bytes())
		return flag.ErrHelp
	case err != nil:
		// The flag package names the flag: "flag provided but not
		// defined: -x", `invalid value "x" for flag -replicas: parse error`.
		return &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	return nil
}

// envPattern finds the environment variable a flag falls back to: its
// usage names it as "(env NAME". The usage is the one place that says so,
// so -h cannot disagree with what shopbus reads.
var envPattern = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)`)

// envOf returns the environment variable f falls back to, or "".
func envOf(f *flag.Flag) string {
	if m := envPattern.FindStringSubmatch(f.Usage); m != nil {
		return m[1]
	}
	return ""
}

// envVars returns the environment variables the flags of fs fall back to.
func envVars(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if name := envOf(f); name != "" {
			names = append(names, name)
		}
	})
	return names
}

// applyEnv sets each flag of fs that the command line did not set from its
// environment variable (envOf), when lookup finds it, with the flag's own
// parser: a malformed value is a usageError naming the variable and the
// flag, never a silent fall back to the default. A variable set to the
// empty string is set. A secret's value is never quoted.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envOf(f)
		if name == "" || given[f.Name] {
			return
		}
		v, ok := lookup(name)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			shown := fmt.Sprintf("=%q", v)
			if _, isSecret := f.Value.(interface{ isSecret() }); isSecret {
				shown = ""
			}
			errs = append(errs, fmt.Errorf("environment variable %s%s is not a valid --%s: %w", name, shown, f.Name, err))
		}
	})
	if len(errs) > 0 {
		return &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", fs.Name(), errors.Join(errs...))}
	}
	return nil
}

// checkAddr reports a listen address (flag name) that is not host:port.
func checkAddr(name, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("--%s %q: want host:port", name, addr)
	}
	return nil
}

// checkURL reports a base URL (flag name) that is not http(s)://host….
func checkURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--%s %q: want an http:// or https:// URL", name, raw)
	}
	return nil
}
