package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopbus/shopbus/services/message"
	"github.com/shopbus/shopbus/services/post"
)

// binary is shopbus built once for the tests of this package, as the
// Dockerfile builds it (dockerBuild).
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "shopbus-cli")
	if err != nil {
		return "", err
	}
	return dockerBuild(filepath.Join(dir, "shopbus"))
})

// shopbus runs the binary with args and the extra environment env, and
// returns its stdout, stderr and exit status.
func shopbus(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("shopbus %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// helpForms are every way to ask for the help of the command path cmd.
func helpForms(cmd ...string) [][]string {
	return [][]string{
		append(append([]string{}, cmd...), "-h"),
		append(append([]string{}, cmd...), "--help"),
		append([]string{"help"}, cmd...),
	}
}

// TestHelp: -h, --help and "help" on every command, every serve component
// and every dlq subcommand print a usage on stdout, nothing on stderr, and
// exit 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	paths := [][]string{{}}
	for _, c := range commands {
		paths = append(paths, []string{c.name})
	}
	for _, c := range components {
		paths = append(paths, []string{"serve", c.name})
	}
	for _, sub := range dlqSubcommands {
		paths = append(paths, []string{"dlq", sub})
	}
	for _, path := range paths {
		forms := helpForms(path...)
		if len(path) == 0 {
			forms = [][]string{{"help"}, {"-h"}, {"--help"}}
		}
		for _, args := range forms {
			stdout, stderr, code := shopbus(t, nil, args...)
			if code != 0 || !strings.Contains(stdout, "usage") || stderr != "" {
				t.Errorf("shopbus %s: exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
			}
		}
	}
}

// TestMisuse: an unknown command, subcommand or flag, a value a flag
// cannot parse and a setting that cannot work each exit 2 with a message
// naming what is wrong.
func TestMisuse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "usage"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"serve"}, "name a component"},
		{[]string{"serve", "billing"}, `unknown component "billing"`},
		{[]string{"dlq"}, "name a subcommand"},
		{[]string{"dlq", "purge"}, `unknown subcommand "purge"`},
		{[]string{"serve", "order", "--replicas", "three"}, `invalid value "three" for flag -replicas`},
		{[]string{"serve", "order", "--replicas", "0"}, "--replicas 0"},
		{[]string{"serve", "gateway", "--partitions", "257"}, "--partitions 257"},
		{[]string{"serve", "order", "--orders-per-second", "-1"}, "--orders-per-second -1"},
		{[]string{"serve", "order", "--order-burst", "0"}, "--order-burst 0"},
		{[]string{"serve", "message", "--messages-per-second", "0"}, "--messages-per-second 0"},
		{[]string{"serve", "post", "--post-burst", "-1"}, "--post-burst -1"},
		{[]string{"dev", "--follows-per-second", "-2"}, "--follows-per-second -2"},
		{[]string{"dev", "--follow-burst", "0"}, "--follow-burst 0"},
		{[]string{"serve", "order", "--max-line-units", "0"}, "--max-line-units 0"},
		{[]string{"serve", "order", "--stuck-after", "0s"}, "--stuck-after 0s"},
		{[]string{"serve", "order", "--log-level", "loud"}, "--log-level"},
		{[]string{"serve", "gateway", "--order-url", "order:8081"}, "--order-url"},
		{[]string{"serve", "order", "extra"}, "unexpected arguments extra"},
		{[]string{"dev", "--nats-port", "4222"}, "--nats-port 4222"},
		{[]string{"dev", "--stuck-after", "-1m"}, "--stuck-after -1m"},
		{[]string{"bench", "--clients", "0"}, "--clients 0"},
		{[]string{"bench", "--skus", "0"}, "--skus 0"},
		{[]string{"bench", "--customers", "0"}, "--customers 0"},
		{[]string{"bench", "--rate", "-1"}, "--rate -1"},
		{[]string{"bench", "--rate", "1e-10"}, "--rate 1e-10: need 0 (closed loop) or at least 0.01 orders/s"},
		{[]string{"dlq", "list", "--limit", "0"}, "--limit 0"},
		{[]string{"dlq", "show"}, "name one dead letter id"},
		{[]string{"dlq", "redrive", "x"}, `"x" is not a dead letter id`},
		{[]string{"dlq", "list", "--reason", "bored"}, `--reason "bored"`},
		{[]string{"groups", "--interval", "0s"}, "--interval 0s"},
		{[]string{"lag", "a", "b"}, "at most one group"},
		{[]string{"healthcheck", "--timeout", "0s"}, "--timeout 0s"},
		{[]string{"dev", "--partitions", "0"}, "--partitions 0"},
		{[]string{"healthcheck", "--url", "127.0.0.1:8080/readyz"}, "--url"},
	}
	for _, c := range commands {
		args := []string{c.name, "--no-such-flag"}
		switch c.name {
		case "serve":
			args = []string{"serve", "order", "--no-such-flag"}
		case "dlq":
			args = []string{"dlq", "list", "--no-such-flag"}
		}
		cases = append(cases, struct {
			args []string
			want string
		}{args, "flag provided but not defined: -no-such-flag"})
	}
	for _, tc := range cases {
		_, stderr, code := shopbus(t, nil, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("shopbus %s: exit %d (want 2), stderr (want %q):\n%s", strings.Join(tc.args, " "), code, tc.want, stderr)
		}
	}
}

// TestMalformedEnvironment: an environment variable a flag cannot parse is
// an error naming the variable (exit 2), never the default.
func TestMalformedEnvironment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  string
	}{
		{[]string{"serve", "order"}, "SHOPBUS_ORDER_BURST=lots"},
		{[]string{"serve", "order"}, "SHOPBUS_ORDERS_PER_SECOND=fast"},
		{[]string{"serve", "message"}, "SHOPBUS_MESSAGE_BURST=lots"},
		{[]string{"serve", "post"}, "SHOPBUS_FOLLOWS_PER_SECOND=fast"},
		{[]string{"serve", "order"}, "SHOPBUS_MAX_LINE_UNITS=-1"},
		{[]string{"serve", "gateway"}, "SHOPBUS_STREAM_REPLICAS=three"},
		{[]string{"serve", "inventory"}, "SHOPBUS_STREAM_PARTITIONS="},
		{[]string{"serve", "order"}, "SHOPBUS_STUCK_AFTER=5"},
		{[]string{"dev"}, "SHOPBUS_NATS_PORT=fourteen"},
		{[]string{"dev"}, "SHOPBUS_NATS_MONITOR_PORT=1e3"},
		{[]string{"dev"}, "SHOPBUS_STREAM_PARTITIONS=eight"},
		{[]string{"healthcheck"}, "SHOPBUS_HEALTHCHECK_TIMEOUT=soon"},
	} {
		name, _, _ := strings.Cut(tc.env, "=")
		_, stderr, code := shopbus(t, []string{tc.env, "SHOPBUS_ADMIN_TOKEN=t"}, tc.args...)
		if code != 2 || !strings.Contains(stderr, "environment variable "+name) {
			t.Errorf("%s shopbus %s: exit %d (want 2), stderr:\n%s", tc.env, strings.Join(tc.args, " "), code, stderr)
		}
	}
}

// TestEveryEnvironmentVariableIsParsed: for every flag of every serve
// component that falls back to an environment variable and is not a
// string, a value its type cannot hold is an error naming the variable;
// and a valid value is applied, unless the command line set the flag.
func TestEveryEnvironmentVariableIsParsed(t *testing.T) {
	t.Parallel()
	for _, c := range components {
		fs, _, _ := serveFlags(c.name)
		fs.VisitAll(func(f *flag.Flag) {
			name := envOf(f)
			if name == "" {
				return
			}
			g, ok := f.Value.(flag.Getter)
			if !ok {
				return // a secret: a string
			}
			if _, isString := g.Get().(string); isString {
				return
			}
			_, err := parseServe([]string{c.name}, func(n string) (string, bool) { return "\x7fnot-a-value", n == name })
			var misuse *usageError
			if !errors.As(err, &misuse) || !strings.Contains(err.Error(), "environment variable "+name) {
				t.Errorf("serve %s with %s malformed: %v", c.name, name, err)
			}
		})
	}
	env := map[string]string{"SHOPBUS_STREAM_REPLICAS": "3", "SHOPBUS_ADDR": "0.0.0.0:9000", "DATABASE_URL": "postgres://db/x", "SHOPBUS_ATOMIC_BATCHES": "true"}
	lookup := func(n string) (string, bool) { v, ok := env[n]; return v, ok }
	o, err := parseServe([]string{"order", "--addr", "127.0.0.1:1"}, lookup)
	if err != nil || o.replicas != 3 || o.addr != "127.0.0.1:1" || o.databaseURL != "postgres://db/x" || !o.atomicBatches {
		t.Errorf("parseServe = %+v, %v; want replicas 3 and atomic batches from the environment, addr from the command line", o, err)
	}
}

// TestSecretNotQuoted: a malformed secret is named, not shown. (No secret
// flag can fail to parse today; this checks the rule on a flag set of its
// own.)
func TestSecretNotQuoted(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(&failingSecret{secret{def: ""}}, "token", "a token (env T_TOKEN)")
	fs.Duration("wait", time.Second, "a wait (env T_WAIT)")
	err := applyEnv(fs, func(n string) (string, bool) { return "s3cret-" + n, true })
	if err == nil || strings.Contains(err.Error(), "s3cret-T_TOKEN") || !strings.Contains(err.Error(), "T_TOKEN") ||
		!strings.Contains(err.Error(), `T_WAIT="s3cret-T_WAIT"`) {
		t.Errorf("applyEnv: %v", err)
	}
}

// failingSecret is a secret whose Set always fails.
type failingSecret struct{ secret }

func (*failingSecret) Set(string) error { return fmt.Errorf("no") }

// TestUserLimitsFlags: the message and post limits come from their flags,
// or from the environment where a flag is not given, and reach the
// stack's configuration.
func TestUserLimitsFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SHOPBUS_MESSAGE_BURST": "7", "SHOPBUS_POSTS_PER_SECOND": "0.5", "SHOPBUS_FOLLOW_BURST": "9"}
	o, err := parseServe([]string{"post", "--follow-burst", "3", "--messages-per-second", "2"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if o.messageLimits != (message.Limits{MessagesPerSecond: 2, Burst: 7}) {
		t.Errorf("message limits %+v, want 2/s and a burst of 7", o.messageLimits)
	}
	want := post.Limits{PostsPerSecond: 0.5, PostBurst: post.DefaultLimits.PostBurst, FollowsPerSecond: post.DefaultLimits.FollowsPerSecond, FollowBurst: 3}
	if o.postLimits != want {
		t.Errorf("post limits %+v, want %+v", o.postLimits, want)
	}
}
