package main

import (
	"bytes"
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/shopbus/shopbus/internal/natsembed"
)

// loadCompose loads compose.yaml with compose-go, the loader Docker Compose
// itself uses (schema validation, interpolation, anchors and merges), in
// an environment of env only: nothing of the test's own environment, and
// no .env file, changes it.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, "compose.yaml")},
		cli.WithWorkingDirectory(repoRoot), cli.WithEnv(list), cli.WithName("shopbus"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return p
}

// shopbusService is a service of compose.yaml that runs a shopbus
// component: built from the Dockerfile, with `serve <component>` as its
// command.
type shopbusService struct {
	name string
	svc  types.ServiceConfig
	opts *serveOptions
	env  map[string]string
}

// shopbusServices returns the services of p built from the Dockerfile,
// with their commands parsed by `shopbus serve`'s own parser in their own
// environment; it fails the test on any that does not parse.
func shopbusServices(t *testing.T, p *types.Project) []shopbusService {
	t.Helper()
	var out []shopbusService
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		if svc.Build == nil {
			continue
		}
		env := environment(svc)
		if len(svc.Command) < 2 || svc.Command[0] != "serve" {
			t.Errorf("service %s: command %q is not serve <component>", name, svc.Command)
			continue
		}
		o, err := parseServe(svc.Command[1:], func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Errorf("service %s: command %q: %v", name, svc.Command, err)
			continue
		}
		out = append(out, shopbusService{name: name, svc: svc, opts: o, env: env})
	}
	return out
}

// environment returns a service's environment as a map.
func environment(svc types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range svc.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// port returns the port of a host:port address.
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return p
}

// TestCompose checks compose.yaml offline, as loaded by compose-go: every
// shopbus component runs, each with a command that shopbus's own flag
// parsing accepts and only environment variables that shopbus reads;
// every container has a health check, and what depends on it waits for it
// to be healthy; nothing is published but on 127.0.0.1, and no published
// port is used twice; the NATS configuration is valid for nats-server and
// syncs every write; Prometheus scrapes every component's metrics port and
// NATS; Grafana gets the dashboard; the image is the Dockerfile's static
// build of ./cmd/shopbus; and .env.example names exactly the variables
// compose.yaml reads.
func TestCompose(t *testing.T) {
	p := loadCompose(t, nil)
	services := shopbusServices(t, p)
	d, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}

	// Every component serve knows runs, once.
	var running []string
	byName := map[string]shopbusService{}
	for _, s := range services {
		running = append(running, s.opts.component)
		byName[s.name] = s
	}
	for _, c := range components {
		if n := strings.Count(" "+strings.Join(running, " ")+" ", " "+c.name+" "); n != 1 {
			t.Errorf("component %s runs in %d services of compose.yaml, want 1", c.name, n)
		}
	}

	for _, s := range services {
		// Only variables shopbus reads: those its flags fall back to.
		fs, _, _ := serveFlags(s.opts.component)
		for k := range s.env {
			if !slices.Contains(envVars(fs), k) {
				t.Errorf("service %s sets %s, which shopbus serve %s does not read (it reads %s)", s.name, k, s.opts.component, strings.Join(envVars(fs), ", "))
			}
		}
		// Reachable from the other containers, and with authentication.
		for flag, addr := range map[string]string{"addr": s.opts.addr, "metrics-addr": s.opts.metricsAddr} {
			if host, _, _ := net.SplitHostPort(addr); host != "0.0.0.0" && host != "" {
				t.Errorf("service %s: --%s %s is not reachable from the other containers", s.name, flag, addr)
			}
		}
		if s.opts.addr == s.opts.metricsAddr {
			t.Errorf("service %s: --addr and --metrics-addr are both %s", s.name, s.opts.addr)
		}
		if s.opts.insecure || s.env["SHOPBUS_ADMIN_TOKEN"] == "" {
			t.Errorf("service %s: want an admin token from the environment and no --insecure", s.name)
		}
		// The health check is shopbus's own, on the component's port.
		if hc := s.svc.HealthCheck; hc != nil && len(hc.Test) == 5 {
			u, err := url.Parse(hc.Test[4])
			if hc.Test[1] != d.entrypoint || hc.Test[2] != "healthcheck" || hc.Test[3] != "--url" || err != nil ||
				u.Hostname() != "127.0.0.1" || u.Port() != port(t, s.opts.addr) || u.Path != "/readyz" {
				t.Errorf("service %s: health check %q, want %s healthcheck --url http://127.0.0.1:%s/readyz", s.name, hc.Test, d.entrypoint, port(t, s.opts.addr))
			}
		} else {
			t.Errorf("service %s: health check %v, want [CMD %s healthcheck --url …]", s.name, s.svc.HealthCheck, d.entrypoint)
		}
		if !s.svc.ReadOnly || s.svc.Build.Context != p.WorkingDir {
			t.Errorf("service %s: want a read-only container of the image built from the repository", s.name)
		}
	}

	// The gateway calls the services where they listen.
	if gw, ok := byName["gateway"]; ok {
		urls := map[string]string{"order-url": gw.opts.orderURL, "inventory-url": gw.opts.inventoryURL}
		for name, u := range gw.opts.serviceURLs {
			urls[name+"-url"] = *u
		}
		for flag, raw := range urls {
			u, _ := url.Parse(raw)
			target, ok := byName[u.Hostname()]
			if !ok || target.opts.component != strings.TrimSuffix(flag, "-url") || u.Port() != port(t, target.opts.addr) {
				t.Errorf("gateway --%s %s: not the %s service's address", flag, raw, strings.TrimSuffix(flag, "-url"))
			}
		}
	}

	// Health checks, dependencies, published ports.
	published := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		if svc.HealthCheck == nil || svc.HealthCheck.Disable || len(svc.HealthCheck.Test) < 2 || svc.HealthCheck.Test[0] != "CMD" {
			t.Errorf("service %s has no health check (exec form, CMD)", name)
		}
		for dep, c := range svc.DependsOn {
			if c.Condition != types.ServiceConditionHealthy {
				t.Errorf("service %s depends on %s with condition %q, want %s", name, dep, c.Condition, types.ServiceConditionHealthy)
			}
		}
		for _, pc := range svc.Ports {
			if pc.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes port %d on %q, want 127.0.0.1 only", name, pc.Target, pc.HostIP)
			}
			if other, dup := published[pc.Published]; dup {
				t.Errorf("services %s and %s both publish host port %s", other, name, pc.Published)
			}
			published[pc.Published] = name
		}
		if len(svc.Ports) > 0 && !slices.Contains([]string{"gateway", "grafana", "prometheus"}, name) {
			t.Errorf("service %s publishes %v: only the gateway, Grafana and Prometheus need to", name, svc.Ports)
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s: %v", name, v.Source, err)
				}
			}
		}
	}
	if gw := p.Services["gateway"]; len(gw.Ports) != 1 || strconv.Itoa(int(gw.Ports[0].Target)) != port(t, byName["gateway"].opts.addr) {
		t.Errorf("gateway publishes %v, want its --addr port", gw.Ports)
	}

	t.Run("nats", func(t *testing.T) { checkNATS(t, p, services) })
	t.Run("prometheus", func(t *testing.T) { checkPrometheus(t, p, services) })
	t.Run("grafana", func(t *testing.T) { checkGrafana(t, p) })
	t.Run("dockerfile", func(t *testing.T) { checkDockerfile(t, d) })
	t.Run("env-example", func(t *testing.T) { checkEnvExample(t) })
}

// natsOptions loads the NATS configuration file that the nats service
// mounts, with the server's own parser, in the service's environment (the
// file reads its password from it). It returns the file's path too.
func natsOptions(t *testing.T, p *types.Project) (*server.Options, string) {
	t.Helper()
	svc := p.Services["nats"]
	i := slices.Index(svc.Command, "--config")
	if i < 0 || i+1 >= len(svc.Command) {
		t.Fatalf("nats: command %q names no --config", svc.Command)
	}
	var file string
	for _, v := range svc.Volumes {
		if v.Target == svc.Command[i+1] {
			file = v.Source
		}
	}
	if file == "" {
		t.Fatalf("nats: %s is not mounted", svc.Command[i+1])
	}
	for k, v := range environment(svc) {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server refuses %s: %v", file, err)
	}
	return opts, file
}

func checkNATS(t *testing.T, p *types.Project, services []shopbusService) {
	opts, file := natsOptions(t, p)
	switch {
	case !opts.JetStream:
		t.Errorf("%s: JetStream is off", file)
	case !opts.SyncAlways:
		t.Errorf("%s: jetstream { sync_interval: always } is missing: acknowledged writes could be lost", file)
	case opts.MaxPayload < natsembed.MaxPayload:
		t.Errorf("%s: max_payload %d, want at least %d (natsembed.MaxPayload)", file, opts.MaxPayload, natsembed.MaxPayload)
	case opts.HTTPPort <= 0:
		t.Errorf("%s: no monitoring port", file)
	case opts.StoreDir == "":
		t.Errorf("%s: no store_dir", file)
	}
	if !slices.ContainsFunc(p.Services["nats"].Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == opts.StoreDir
	}) {
		t.Errorf("nats: the store %s is not on a volume", opts.StoreDir)
	}
	if hc := p.Services["nats"].HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), ":"+strconv.Itoa(opts.HTTPPort)+"/healthz") {
		t.Errorf("nats: the health check does not ask the monitoring port %d", opts.HTTPPort)
	}
	if exp := p.Services["nats-exporter"]; !slices.Contains(exp.Command, "http://nats:"+strconv.Itoa(opts.HTTPPort)) {
		t.Errorf("nats-exporter: command %q does not read http://nats:%d", exp.Command, opts.HTTPPort)
	}
	for _, s := range services {
		u, err := url.Parse(s.opts.natsURL)
		if err != nil || u.Hostname() != "nats" || u.Port() != strconv.Itoa(opts.Port) {
			t.Errorf("service %s: NATS URL is not nats:%d", s.name, opts.Port)
			continue
		}
		if pw, _ := u.User.Password(); u.User.Username() != opts.Username || pw != opts.Password {
			t.Errorf("service %s: the NATS URL's user and password are not the server's", s.name)
		}
	}
}

func checkPrometheus(t *testing.T, p *types.Project, services []shopbusService) {
	var config struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	file := mountedFile(t, p, "prometheus", "/etc/prometheus/prometheus.yml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &config); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	targets := map[string]bool{}
	for _, sc := range config.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				targets[target] = true
				host, _, _ := net.SplitHostPort(target)
				if _, ok := p.Services[host]; !ok {
					t.Errorf("%s: job %s scrapes %s, not a service", file, sc.JobName, target)
				}
			}
		}
	}
	for _, s := range services {
		want := net.JoinHostPort(s.name, port(t, s.opts.metricsAddr))
		if !targets[want] {
			t.Errorf("%s scrapes no %s (service %s's --metrics-addr)", file, want, s.name)
		}
		delete(targets, want)
	}
	if !targets["nats-exporter:7777"] {
		t.Errorf("%s does not scrape NATS (nats-exporter:7777)", file)
	}
	delete(targets, "nats-exporter:7777")
	if len(targets) > 0 {
		t.Errorf("%s scrapes %v, which serve no metrics", file, slices.Collect(maps.Keys(targets)))
	}
}

// mountedFile is the file that a bind mount of service puts at target.
func mountedFile(t *testing.T, p *types.Project, service, target string) string {
	t.Helper()
	for _, v := range p.Services[service].Volumes {
		if v.Target == target {
			return v.Source
		}
		if rel, ok := strings.CutPrefix(target, v.Target+"/"); ok {
			return filepath.Join(v.Source, rel)
		}
	}
	t.Fatalf("%s: nothing mounted at %s", service, target)
	return ""
}

func checkGrafana(t *testing.T, p *types.Project) {
	var ds struct {
		Datasources []struct {
			URL, Type string
		} `yaml:"datasources"`
	}
	file := mountedFile(t, p, "grafana", "/etc/grafana/provisioning/datasources/prometheus.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("%s: %v %+v", file, err, ds)
	}
	u, err := url.Parse(ds.Datasources[0].URL)
	if err != nil || p.Services[u.Hostname()].Image == "" || !slices.ContainsFunc(p.Services[u.Hostname()].HealthCheck.Test, func(s string) bool { return strings.Contains(s, ":"+u.Port()+"/") }) {
		t.Errorf("%s: data source %s is not the Prometheus service", file, ds.Datasources[0].URL)
	}
	var provider struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	file = mountedFile(t, p, "grafana", "/etc/grafana/provisioning/dashboards/shopbus.yaml")
	if b, err = os.ReadFile(file); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &provider); err != nil || len(provider.Providers) != 1 {
		t.Fatalf("%s: %v", file, err)
	}
	if _, err := os.Stat(mountedFile(t, p, "grafana", provider.Providers[0].Options.Path+"/shopbus.json")); err != nil {
		t.Errorf("grafana: the dashboard is not at %s: %v", provider.Providers[0].Options.Path, err)
	}
}

func checkDockerfile(t *testing.T, d *dockerfile) {
	// The package CI builds and tests, static, into the image run as
	// nonroot, its ENTRYPOINT the binary built.
	if !strings.HasPrefix(d.build, "CGO_ENABLED=0 go build ") || !strings.HasSuffix(d.build, " ./cmd/shopbus") {
		t.Errorf("Dockerfile: %q is not CGO_ENABLED=0 go build … ./cmd/shopbus", d.build)
	}
	if !strings.HasPrefix(d.final, "gcr.io/distroless/static") && d.final != "scratch" {
		t.Errorf("Dockerfile: the image is based on %s, want distroless static or scratch", d.final)
	}
	if !strings.HasPrefix(d.user, "nonroot") && !strings.HasPrefix(d.user, "65532") {
		t.Errorf("Dockerfile: USER %q, want nonroot", d.user)
	}
	if !slices.Contains(d.copied, d.output+" "+d.entrypoint) {
		t.Errorf("Dockerfile: the ENTRYPOINT %s is not the binary built (%s), copied %v", d.entrypoint, d.output, d.copied)
	}
	out, err := exec.Command("go", "list", "-f", "{{.Name}} {{.ImportPath}}", filepath.Join(repoRoot, "cmd/shopbus")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "main github.com/shopbus/shopbus/cmd/shopbus" {
		t.Errorf("go list ./cmd/shopbus: %s %v", out, err)
	}
}

// checkEnvExample: .env.example sets exactly the variables compose.yaml
// interpolates, and with it as .env the file loads to the same project as
// with the defaults it documents.
func checkEnvExample(t *testing.T) {
	file := filepath.Join(repoRoot, ".env.example")
	env, err := dotenv.GetEnvFromFile(nil, []string{file})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(string(b), -1) {
		used[m[1]] = true
	}
	if !slices.Equal(slices.Sorted(maps.Keys(used)), slices.Sorted(maps.Keys(env))) {
		t.Errorf("compose.yaml reads %v, .env.example sets %v", slices.Sorted(maps.Keys(used)), slices.Sorted(maps.Keys(env)))
	}
	withDefaults, withExample := loadCompose(t, nil), loadCompose(t, env)
	a, _ := withDefaults.MarshalYAML()
	b, _ = withExample.MarshalYAML()
	if !bytes.Equal(a, b) {
		t.Errorf(".env.example's values are not compose.yaml's defaults")
	}
}
