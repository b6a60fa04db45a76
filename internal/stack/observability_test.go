package stack_test

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	orderv1 "github.com/shopbus/shopbus/gen/go/shopbus/order/v1"
	"github.com/shopbus/shopbus/internal/event"
	"github.com/shopbus/shopbus/internal/lag"
	"github.com/shopbus/shopbus/internal/stack"
	"github.com/shopbus/shopbus/internal/telemetry"
	"github.com/shopbus/shopbus/internal/testenv"
)

// scrape reads url's Prometheus text exposition with Prometheus' own
// parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: %s: %s", url, res.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// value returns the value of the sample of family whose labels include
// labels (name, value pairs), and whether there is one.
func value(families map[string]*dto.MetricFamily, family string, labels ...string) (float64, bool) {
	f, ok := families[family]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels...) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, labels ...string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
		}) {
			return false
		}
	}
	return true
}

func withMetrics(c *stack.Config) {
	c.MetricsAddr = "127.0.0.1:0"
	c.Lag = lag.Options{Interval: 100 * time.Millisecond, Window: 5}
}

// TestMetrics places orders through a running stack, scrapes /metrics and
// finds every metric of the observability issue with a sane value.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startStack(t, withMetrics)
	s.setStock(t, "MUG-001", 100)
	const orders = 5
	for range orders {
		o := s.create(t, orderRequest(line("MUG-001", 1)))
		s.await(t, o.GetOrderId())
	}
	// One poison event, for the dead-letter figures.
	if _, err := s.JS.PublishMsg(context.Background(), &nats.Msg{Subject: "ecommerce.order.created.v2.k1", Data: []byte("not an envelope")}); err != nil {
		t.Fatal(err)
	}
	s.awaitDeadLetters(t, 2) // one per consumer of order.created: inventory's and fraud's
	const (
		inv = "inventory-reserve-stock"
		ord = "order-apply-inventory-outcome"
	)
	var families map[string]*dto.MetricFamily
	// Lag figures come from the monitor's samples: wait until one shows
	// every order settled.
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		families = scrape(t, s.MetricsURL())
		for _, group := range []string{inv, ord} {
			acked := 0.0
			for _, m := range families["shopbus_consumer_acked_total"].GetMetric() {
				if hasLabels(m, "consumer", group) {
					acked += m.GetCounter().GetValue()
				}
			}
			if acked < orders {
				return fmt.Errorf("%s: acked %v of %d", group, acked, orders)
			}
		}
		if _, ok := value(families, "shopbus_dlq_entries", "stream", "ECOMMERCE_ORDER"); !ok {
			return errors.New("no shopbus_dlq_entries yet")
		}
		return nil
	})
	want := []struct {
		family string
		labels []string
		check  func(float64) bool
	}{
		{"shopbus_consumer_handled_total", []string{"consumer", inv, "outcome", "acked"}, func(v float64) bool { return v >= 1 }},
		{"shopbus_consumer_handled_total", []string{"consumer", inv, "outcome", "dead_lettered"}, func(v float64) bool { return v == 1 }},
		{"shopbus_dlq_entries", []string{"stream", "ECOMMERCE_ORDER", "reason", "terminated"}, func(v float64) bool { return v == 2 }},
		{"shopbus_consumer_handle_duration_seconds", []string{"consumer", inv}, func(v float64) bool { return v >= 1 }},
		{"shopbus_consumer_pending", []string{"consumer", inv}, func(v float64) bool { return v == 0 }},
		{"shopbus_consumer_ack_pending", []string{"consumer", ord}, func(v float64) bool { return v == 0 }},
		{"shopbus_consumer_redelivered", []string{"consumer", ord}, func(v float64) bool { return v == 0 }},
		{"shopbus_consumer_delivered_total", []string{"consumer", inv}, func(v float64) bool { return v >= 0 }},
		{"shopbus_consumer_lag", []string{"consumer", inv}, func(v float64) bool { return v == 0 }},
		{"shopbus_consumer_lag_age_seconds", []string{"consumer", inv}, func(v float64) bool { return v == 0 }},
		{"shopbus_consumer_status", []string{"consumer", inv, "partition", "all"}, func(v float64) bool { return v == float64(lag.OK) }},
		{"shopbus_consumer_rate_per_second", []string{"consumer", inv}, func(v float64) bool { return v >= 0 }},
		{"shopbus_outbox_published_total", []string{"schema", s.schema + "_order"}, func(v float64) bool { return v == orders }},
		{"shopbus_outbox_publish_duration_seconds", []string{"schema", s.schema + "_inventory"}, func(v float64) bool { return v == orders+1 }}, // and MUG-001's price
		{"shopbus_outbox_backlog", []string{"schema", s.schema + "_order"}, func(v float64) bool { return v == 0 }},
		{"shopbus_outbox_oldest_age_seconds", []string{"schema", s.schema + "_order"}, func(v float64) bool { return v == 0 }},
		{"shopbus_order_decision_duration_seconds", []string{"outcome", "confirmed"}, func(v float64) bool { return v == orders }},
		{"rpc_server_call_duration_seconds", []string{"rpc_method", "shopbus.order.v1.OrderService/CreateOrder"}, func(v float64) bool { return v == orders }},
	}
	for _, w := range want {
		v, ok := value(families, w.family, w.labels...)
		if !ok {
			t.Errorf("/metrics has no %s%v", w.family, w.labels)
			continue
		}
		if !w.check(v) {
			t.Errorf("%s%v = %v", w.family, w.labels, v)
		}
	}
	// The dashboard's queries name only metrics the code exports.
	for _, name := range dashboardMetrics(t) {
		family := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base].GetType() == dto.MetricType_HISTOGRAM {
				family = base
			}
		}
		if _, ok := families[family]; !ok {
			t.Errorf("the dashboard queries %s, which /metrics does not export", name)
		}
	}
	if t.Failed() {
		for name := range families {
			t.Log(name)
		}
	}
}

// TestTrace places an order with a W3C traceparent and finds one trace with
// the spans of every step, each parented on the step before: the RPC (a
// child of the caller's span), the outbox insert, the relay's publish,
// inventory's handling, its outbox insert and publish, and order's
// handling. The events' envelopes carry the trace and their insert span.
func TestTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(context.Background(), telemetry.Options{SpanProcessor: rec, NoMetrics: true})
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t, func(c *stack.Config) { c.Telemetry = tel })
	s.setStock(t, "MUG-001", 10)

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req := connect.NewRequest(orderRequest(line("MUG-001", 1)))
	req.Header().Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	res, err := s.orders.CreateOrder(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if o := s.await(t, res.Msg.GetOrder().GetOrderId()); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("order %v", o)
	}
	const created, adjusted, scored = "ecommerce.order.created", "ecommerce.inventory.adjusted", "ml.order.scored"
	// name → parent name ("" for the caller's span). order.created has two
	// consumers, inventory and fraud: a "process" span each, one parent of
	// the adjustment, the other of the score.
	want := []struct{ name, parent string }{
		{"shopbus.order.v1.OrderService/CreateOrder", ""},
		{"outbox.insert " + created, "shopbus.order.v1.OrderService/CreateOrder"},
		{"publish " + created, "outbox.insert " + created},
		{"process " + created, "outbox.insert " + created},
		{"outbox.insert " + adjusted, "process " + created},
		{"publish " + adjusted, "outbox.insert " + adjusted},
		{"process " + adjusted, "outbox.insert " + adjusted},
		{"outbox.insert " + scored, "process " + created},
		{"publish " + scored, "outbox.insert " + scored},
		{"process " + scored, "outbox.insert " + scored},
	}
	var spans []sdktrace.ReadOnlySpan
	byID := map[string]sdktrace.ReadOnlySpan{}
	// find returns the span named name whose parent is named parent (the
	// caller's when "").
	find := func(name, parent string) sdktrace.ReadOnlySpan {
		for _, sp := range spans {
			if sp.Name() != name {
				continue
			}
			p := byID[sp.Parent().SpanID().String()]
			if parent == "" && sp.Parent().SpanID().String() == callerSpan || p != nil && p.Name() == parent {
				return sp
			}
		}
		return nil
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		spans = spans[:0]
		clear(byID)
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID().String() == traceID {
				spans = append(spans, sp)
				byID[sp.SpanContext().SpanID().String()] = sp
			}
		}
		for _, w := range want {
			if find(w.name, w.parent) == nil {
				return fmt.Errorf("no span %q under %q in the trace yet", w.name, cmp.Or(w.parent, "the caller"))
			}
		}
		return nil
	})
	// Events are handled in batches: the batch's span, in the trace of its
	// first event, says how the batch ended.
	acked := false
	for _, sp := range spans {
		if sp.Name() == "process batch "+created && slices.Contains(sp.Attributes(), attribute.String("shopbus.outcome", "acked")) {
			acked = true
		}
	}
	if !acked {
		t.Errorf("no batch span of %s with an acked outcome", created)
	}
	// The envelope of order.created carries the trace and its insert span.
	msg, err := s.JS.Stream(context.Background(), "ECOMMERCE_ORDER")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := msg.GetLastMsgForSubject(context.Background(), "ecommerce.order.created.>")
	if err != nil {
		t.Fatal(err)
	}
	env, err := event.Decode(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	insert := find("outbox.insert "+created, "shopbus.order.v1.OrderService/CreateOrder").SpanContext()
	if hex.EncodeToString(env.GetTraceId()) != traceID || hex.EncodeToString(env.GetSpanId()) != insert.SpanID().String() {
		t.Errorf("envelope trace %x span %x, want %s %s", env.GetTraceId(), env.GetSpanId(), traceID, insert.SpanID())
	}
	if got := raw.Header.Get("traceparent"); got != "00-"+traceID+"-"+insert.SpanID().String()+"-01" {
		t.Errorf("traceparent header %q", got)
	}
}

// TestReadinessFollowsPostgres: the stack is ready; when PostgreSQL refuses
// connections, /readyz answers 503 naming it and gRPC health NOT_SERVING,
// while /healthz (liveness) stays 200; when PostgreSQL is back, ready again.
func TestReadinessFollowsPostgres(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.StackDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	s := startStack(t, withMetrics, func(c *stack.Config) { c.DatabaseURL = u.String() })
	health := grpchealth.NewClient(http.DefaultClient, s.URL())
	ready := func(want bool) error {
		res, err := http.Get(s.URL() + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if got := res.StatusCode == http.StatusOK; got != want {
			return fmt.Errorf("/readyz %s: %s", res.Status, body)
		}
		if !want && !strings.Contains(string(body), "fail postgres "+s.schema) {
			return fmt.Errorf("/readyz does not name PostgreSQL: %s", body)
		}
		status, err := health.Check(context.Background(), &grpchealth.CheckRequest{})
		if err != nil {
			return err
		}
		if got := status.Status == grpchealth.StatusServing; got != want {
			return fmt.Errorf("gRPC health %v", status.Status)
		}
		return nil
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error { return ready(true) })
	proxy.Refuse()
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error { return ready(false) })
	if res, err := http.Get(s.URL() + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("/healthz while PostgreSQL is away: %v %v", res, err)
	}
	proxy.Accept()
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error { return ready(true) })
}
