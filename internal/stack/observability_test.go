package stack_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shopbus/shopbus/internal/lag"
	"github.com/shopbus/shopbus/internal/stack"
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
		return nil
	})
	want := []struct {
		family string
		labels []string
		check  func(float64) bool
	}{
		{"shopbus_consumer_handled_total", []string{"consumer", inv, "outcome", "acked"}, func(v float64) bool { return v >= 1 }},
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
		{"shopbus_outbox_publish_duration_seconds", []string{"schema", s.schema + "_inventory"}, func(v float64) bool { return v == orders }},
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
	if t.Failed() {
		for name := range families {
			t.Log(name)
		}
	}
}
