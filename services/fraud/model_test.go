package fraud

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	fraudv1 "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
)

var update = flag.Bool("update", false, "rewrite the generated sections of MODEL.md")

const (
	approve = fraudv1.Decision_DECISION_APPROVE
	review  = fraudv1.Decision_DECISION_REVIEW
	decline = fraudv1.Decision_DECISION_DECLINE
)

func mustDefaultModel(t *testing.T) *Model {
	t.Helper()
	m, err := DefaultModel()
	if err != nil {
		t.Fatalf("coefficients.json: %v", err)
	}
	return m
}

// example is one order of MODEL.md's table: the decision and reasons are
// checked here, the score is checked through the document.
type example struct {
	name     string
	features Features
	decision fraudv1.Decision
	reasons  []string
}

// examples are the orders MODEL.md shows. The model's design targets: a
// typical small order approves, a large order or a burst of orders in the
// hour asks for review, an extreme one (very large and in a burst) declines.
var examples = []example{
	{"reference order (every feature at its reference)",
		Features{TotalMinor: 5000, Lines: 2, Units: 3}, approve, nil},
	{"typical small order",
		Features{TotalMinor: 2500, Lines: 2, Units: 3}, approve, nil},
	{"first order of a new customer, small",
		Features{TotalMinor: 2500, Lines: 1, Units: 1, FirstOrder: true}, approve, []string{"FIRST_ORDER"}},
	{"second order within the hour",
		Features{TotalMinor: 3000, Lines: 1, Units: 2, OrdersLastHour: 1, SpendLastHourMinor: 2500}, approve,
		[]string{"HIGH_SPEND_LAST_HOUR", "MANY_ORDERS_LAST_HOUR"}},
	{"bigger basket",
		Features{TotalMinor: 15000, Lines: 4, Units: 6}, approve, []string{"HIGH_TOTAL", "MANY_UNITS", "MANY_LINES"}},
	{"order of 1,000.00",
		Features{TotalMinor: 100000, Lines: 2, Units: 4}, approve, []string{"HIGH_TOTAL", "MANY_UNITS"}},
	{"three orders in the hour",
		Features{TotalMinor: 4000, Lines: 1, Units: 1, OrdersLastHour: 3, SpendLastHourMinor: 12000}, approve,
		[]string{"MANY_ORDERS_LAST_HOUR", "HIGH_SPEND_LAST_HOUR"}},
	{"large order of 2,500.00",
		Features{TotalMinor: 250000, Lines: 2, Units: 4}, review, []string{"HIGH_TOTAL", "MANY_UNITS"}},
	{"large first order of 2,500.00",
		Features{TotalMinor: 250000, Lines: 2, Units: 4, FirstOrder: true}, review,
		[]string{"HIGH_TOTAL", "FIRST_ORDER", "MANY_UNITS"}},
	{"very large order of 20,000.00, nothing else unusual",
		Features{TotalMinor: 2000000, Lines: 3, Units: 5}, review, []string{"HIGH_TOTAL", "MANY_UNITS", "MANY_LINES"}},
	{"bulk: 200 units of one cheap SKU",
		Features{TotalMinor: 30000, Lines: 1, Units: 200}, review, []string{"MANY_UNITS", "HIGH_TOTAL"}},
	{"burst: five orders in the hour",
		Features{TotalMinor: 4000, Lines: 1, Units: 1, OrdersLastHour: 5, SpendLastHourMinor: 20000}, review,
		[]string{"MANY_ORDERS_LAST_HOUR", "HIGH_SPEND_LAST_HOUR"}},
	{"burst: eight orders in the hour",
		Features{TotalMinor: 3000, Lines: 1, Units: 1, OrdersLastHour: 8, SpendLastHourMinor: 24000}, review,
		[]string{"MANY_ORDERS_LAST_HOUR", "HIGH_SPEND_LAST_HOUR"}},
	{"card testing: twelve small orders in the hour",
		Features{TotalMinor: 3000, Lines: 1, Units: 1, OrdersLastHour: 12, SpendLastHourMinor: 36000}, decline,
		[]string{"MANY_ORDERS_LAST_HOUR", "HIGH_SPEND_LAST_HOUR"}},
	{"extreme: 5,000.00 after eight orders (12,000.00) in the hour",
		Features{TotalMinor: 500000, Lines: 5, Units: 20, OrdersLastHour: 8, SpendLastHourMinor: 1200000}, decline,
		[]string{"MANY_ORDERS_LAST_HOUR", "HIGH_TOTAL", "HIGH_SPEND_LAST_HOUR"}},
}

// TestExamples: every documented example gets its decision and reasons,
// and MODEL.md shows exactly the current coefficients and the examples'
// scores (go test ./services/fraud -update rewrites both sections).
func TestExamples(t *testing.T) {
	m := mustDefaultModel(t)
	for _, ex := range examples {
		got := m.Score(ex.features)
		if got.Decision != ex.decision || !slices.Equal(got.Reasons, ex.reasons) {
			t.Errorf("%s: got %.4f %s %v, want %s %v", ex.name, got.Score, got.Decision, got.Reasons, ex.decision, ex.reasons)
		}
	}
	doc, err := os.ReadFile("MODEL.md")
	if err != nil {
		t.Fatal(err)
	}
	want := string(doc)
	for _, section := range []struct{ name, body string }{
		{"coefficients", coefficientsTable(t, m)},
		{"examples", examplesTable(m)},
	} {
		want, err = replaceSection(want, section.name, section.body)
		if err != nil {
			t.Fatal(err)
		}
	}
	if want == string(doc) {
		return
	}
	if *update {
		if err := os.WriteFile("MODEL.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Error("MODEL.md is stale: run go test ./services/fraud -update and commit it")
}

// replaceSection replaces what lies between MODEL.md's markers of a
// generated section.
func replaceSection(doc, name, body string) (string, error) {
	begin := "<!-- BEGIN GENERATED " + name + " (go test ./services/fraud -update) -->\n"
	end := "<!-- END GENERATED " + name + " -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("MODEL.md has no section %q between %q and %q", name, begin, end)
	}
	return doc[:i+len(begin)] + body + doc[j:], nil
}

func coefficientsTable(t *testing.T, m *Model) string {
	var c Coefficients
	if err := json.Unmarshal(defaultCoefficients, &c); err != nil {
		t.Fatal(err)
	}
	reads := map[string]string{
		"total":            "log(1 + TotalMinor/100)",
		"lines":            "Lines",
		"units":            "log(1 + Units)",
		"orders_last_hour": "OrdersLastHour",
		"spend_last_hour":  "log(1 + SpendLastHourMinor/100)",
		"first_order":      "1 if FirstOrder, else 0",
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Model `%s`, version `%s`: bias %g (the reference order scores %.4f); "+
		"thresholds: review from %g, decline from %g.\n\n", m.Name(), m.Version(), c.Bias, sigmoid(c.Bias),
		c.Thresholds.Review, c.Thresholds.Decline)
	b.WriteString("| feature | read as x | reference | weight | odds × per +1 of x | reason code |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | --- |\n")
	for _, tm := range m.terms {
		if reads[tm.name] == "" {
			t.Errorf("coefficientsTable does not say how %s is read", tm.name)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %g | %g | %.2f | `%s` |\n", tm.name, reads[tm.name],
			c.Features[tm.name].Reference, tm.weight, math.Exp(tm.weight), tm.reason)
	}
	return b.String()
}

func examplesTable(m *Model) string {
	var b strings.Builder
	b.WriteString("| example | total | lines | units | orders last hour | spend last hour | first order | score | decision | reasons |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |\n")
	for _, ex := range examples {
		f, r := ex.features, m.Score(ex.features)
		reasons := "—"
		if len(r.Reasons) > 0 {
			reasons = "`" + strings.Join(r.Reasons, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %s | %t | %.4f | %s | %s |\n", ex.name,
			money(f.TotalMinor), f.Lines, f.Units, f.OrdersLastHour, money(f.SpendLastHourMinor), f.FirstOrder,
			r.Score, strings.TrimPrefix(r.Decision.String(), "DECISION_"), reasons)
	}
	return b.String()
}

// money formats minor units as major units with two decimals.
func money(minor int64) string {
	return fmt.Sprintf("%d.%02d", minor/100, minor%100)
}

// TestMoreIsNeverSafer: raising one feature, the others fixed, never
// lowers the score — in particular more orders in the hour.
func TestMoreIsNeverSafer(t *testing.T) {
	m := mustDefaultModel(t)
	raise := []struct {
		name string
		step func(*Features, int)
	}{
		{"orders_last_hour", func(f *Features, i int) { f.OrdersLastHour = i }},
		{"spend_last_hour", func(f *Features, i int) { f.SpendLastHourMinor = int64(i) * 997 }},
		{"total", func(f *Features, i int) { f.TotalMinor = int64(i) * 1013 }},
		{"units", func(f *Features, i int) { f.Units = i }},
		{"lines", func(f *Features, i int) { f.Lines = i }},
	}
	for _, ex := range examples {
		for _, r := range raise {
			f := ex.features
			prev := -1.0
			for i := range 200 {
				r.step(&f, i)
				s := m.Score(f).Score
				if s < prev {
					t.Fatalf("%s, %s = %d: score %v fell below %v", ex.name, r.name, i, s, prev)
				}
				prev = s
			}
		}
		f := ex.features
		f.FirstOrder = false
		returning := m.Score(f).Score
		f.FirstOrder = true
		if first := m.Score(f).Score; first < returning {
			t.Errorf("%s: a first order scores %v, below a returning customer's %v", ex.name, first, returning)
		}
	}
	// A burst raises the score strictly until it saturates.
	f := Features{TotalMinor: 2500, Lines: 1, Units: 1}
	for i := 1; i <= 10; i++ {
		before := m.Score(f).Score
		f.OrdersLastHour = i
		if after := m.Score(f).Score; after <= before {
			t.Errorf("orders_last_hour %d: score %v, not above %v", i, after, before)
		}
	}
}

// TestReasons: reasons are the features above their reference, largest
// contribution first, at most MaxReasons, ties in feature order.
func TestReasons(t *testing.T) {
	coef := Coefficients{
		Model: ModelName, ModelVersion: "test", Bias: -1,
		Thresholds: Thresholds{Review: 0.5, Decline: 0.9},
		Features: map[string]Coefficient{
			"total":            {Weight: 1, Reference: 0},
			"lines":            {Weight: 1, Reference: 2},
			"units":            {Weight: 1, Reference: 0},
			"orders_last_hour": {Weight: 1, Reference: 0},
			"spend_last_hour":  {Weight: 0, Reference: 0},
			"first_order":      {Weight: 1, Reference: 0},
		},
	}
	m, err := NewModel(coef)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    Features
		want []string
	}{
		{"nothing above its reference", Features{Lines: 2}, []string{}},
		{"below the reference is no reason", Features{Lines: 1}, []string{}},
		{"a zero weight is no reason", Features{Lines: 2, SpendLastHourMinor: 1 << 40}, []string{}},
		{"one", Features{Lines: 2, OrdersLastHour: 1}, []string{"MANY_ORDERS_LAST_HOUR"}},
		{"largest first", Features{Lines: 4, OrdersLastHour: 3, FirstOrder: true},
			[]string{"MANY_ORDERS_LAST_HOUR", "MANY_LINES", "FIRST_ORDER"}},
		{"ties in feature order", Features{Lines: 3, OrdersLastHour: 1, FirstOrder: true},
			[]string{"MANY_LINES", "MANY_ORDERS_LAST_HOUR", "FIRST_ORDER"}},
		{"at most three", Features{TotalMinor: 1e6, Lines: 50, Units: 1e5, OrdersLastHour: 20, FirstOrder: true},
			[]string{"MANY_LINES", "MANY_ORDERS_LAST_HOUR", "MANY_UNITS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Score(tt.f).Reasons; !slices.Equal(got, tt.want) {
				t.Errorf("reasons %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEveryReasonFitsTheContract: every reason code matches order.scored's
// reason_codes pattern, and a Result makes a valid order.scored.
func TestEveryReasonFitsTheContract(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)
	seen := map[string]bool{}
	for _, f := range features {
		if !pattern.MatchString(f.reason) || seen[f.reason] {
			t.Errorf("feature %s: reason %q is not a distinct ^[A-Z][A-Z0-9_]{0,63}$", f.name, f.reason)
		}
		seen[f.reason] = true
	}
	m := mustDefaultModel(t)
	for _, ex := range examples {
		r := m.Score(ex.features)
		scored := &fraudv1.OrderScored{
			OrderId: "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", Model: m.Name(), ModelVersion: m.Version(),
			Score: r.Score, Decision: r.Decision, ReasonCodes: r.Reasons, ScoredAt: timestamppb.Now(),
		}
		if err := protovalidate.Validate(scored); err != nil {
			t.Errorf("%s: the order.scored of %+v is invalid: %v", ex.name, r, err)
		}
	}
}

// TestScoreStaysInRange: extreme and negative features give a score in
// [0, 1], never NaN, and the same result every time.
func TestScoreStaysInRange(t *testing.T) {
	m := mustDefaultModel(t)
	for _, f := range []Features{
		{},
		{TotalMinor: -5, Lines: -1, Units: -1, OrdersLastHour: -3, SpendLastHourMinor: -1},
		{TotalMinor: math.MaxInt64, Lines: math.MaxInt, Units: math.MaxInt, OrdersLastHour: math.MaxInt,
			SpendLastHourMinor: math.MaxInt64, FirstOrder: true},
	} {
		r := m.Score(f)
		if math.IsNaN(r.Score) || r.Score < 0 || r.Score > 1 {
			t.Errorf("%+v: score %v", f, r.Score)
		}
		if again := m.Score(f); again.Score != r.Score || !slices.Equal(again.Reasons, r.Reasons) {
			t.Errorf("%+v: scored %+v, then %+v", f, r, again)
		}
	}
	if got, zero := m.Score(Features{TotalMinor: -5}), m.Score(Features{}); got.Score != zero.Score {
		t.Errorf("a negative total scores %v, zero %v: want the same", got.Score, zero.Score)
	}
}

// TestThresholds: the boundaries belong to the higher decision.
func TestThresholds(t *testing.T) {
	th := Thresholds{Review: 0.3, Decline: 0.9}
	for _, tt := range []struct {
		score float64
		want  fraudv1.Decision
	}{
		{0, approve}, {0.2999, approve}, {0.3, review}, {0.8999, review}, {0.9, decline}, {1, decline},
	} {
		if got := th.Decision(tt.score); got != tt.want {
			t.Errorf("Decision(%v) = %s, want %s", tt.score, got, tt.want)
		}
	}
}

// TestBadCoefficientsRefused: LoadModel and NewModel refuse a file that
// is wrong, naming what is wrong.
func TestBadCoefficientsRefused(t *testing.T) {
	edit := func(f func(map[string]any)) []byte {
		var c map[string]any
		if err := json.Unmarshal(defaultCoefficients, &c); err != nil {
			t.Fatal(err)
		}
		f(c)
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	feature := func(c map[string]any, name string) map[string]any {
		return c["features"].(map[string]any)[name].(map[string]any)
	}
	files := []struct {
		name string
		data []byte
		want string
	}{
		{"unknown feature", edit(func(c map[string]any) {
			c["features"].(map[string]any)["ip_country"] = map[string]any{"weight": 1, "reference": 0}
		}), `unknown feature "ip_country"`},
		{"missing feature", edit(func(c map[string]any) { delete(c["features"].(map[string]any), "units") }),
			`missing feature "units"`},
		{"no features", edit(func(c map[string]any) { delete(c, "features") }), `missing feature "total"`},
		{"infinite weight", bytes.Replace(edit(func(c map[string]any) { feature(c, "lines")["weight"] = 12345 }),
			[]byte("12345"), []byte("1e999"), 1), "weight"},
		{"negative weight", edit(func(c map[string]any) { feature(c, "total")["weight"] = -0.5 }),
			"features.total.weight is -0.5"},
		{"negative reference", edit(func(c map[string]any) { feature(c, "total")["reference"] = -1 }),
			"features.total.reference is -1"},
		{"review above decline", edit(func(c map[string]any) {
			c["thresholds"] = map[string]any{"review": 0.9, "decline": 0.5}
		}), "thresholds review 0.9 and decline 0.5"},
		{"review equal to decline", edit(func(c map[string]any) {
			c["thresholds"] = map[string]any{"review": 0.5, "decline": 0.5}
		}), "0 < review < decline < 1"},
		{"review zero", edit(func(c map[string]any) { c["thresholds"] = map[string]any{"review": 0, "decline": 0.5} }),
			"0 < review < decline < 1"},
		{"decline one", edit(func(c map[string]any) { c["thresholds"] = map[string]any{"review": 0.5, "decline": 1} }),
			"0 < review < decline < 1"},
		{"no thresholds", edit(func(c map[string]any) { delete(c, "thresholds") }), "0 < review < decline < 1"},
		{"another model", edit(func(c map[string]any) { c["model"] = "fraud-gbm" }), `model "fraud-gbm"`},
		{"no version", edit(func(c map[string]any) { delete(c, "model_version") }), "model_version"},
		{"version too long", edit(func(c map[string]any) { c["model_version"] = strings.Repeat("9", 65) }),
			"model_version"},
		{"misspelt field", edit(func(c map[string]any) { c["treshold"] = 1 }), `unknown field "treshold"`},
		{"misspelt coefficient", edit(func(c map[string]any) { feature(c, "lines")["wieght"] = 1 }),
			`unknown field "wieght"`},
		{"trailing data", append(slices.Clone(defaultCoefficients), []byte(`{}`)...), "after the JSON object"},
		{"not JSON", []byte("bias: -4"), "coefficients"},
	}
	for _, tt := range files {
		t.Run(tt.name, func(t *testing.T) {
			m, err := LoadModel(tt.data)
			if err == nil {
				t.Fatalf("LoadModel accepted it: %+v", m)
			}
			if !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want ErrInvalidModel naming %q", err, tt.want)
			}
		})
	}

	// NaN and infinities cannot be written in JSON, but a model built in
	// code is checked the same way.
	base := func() Coefficients {
		var c Coefficients
		if err := json.Unmarshal(defaultCoefficients, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tt := range []struct {
		name string
		edit func(*Coefficients)
		want string
	}{
		{"NaN bias", func(c *Coefficients) { c.Bias = math.NaN() }, "bias is NaN"},
		{"infinite review", func(c *Coefficients) { c.Thresholds.Review = math.Inf(-1) }, "thresholds.review is -Inf"},
		{"NaN decline", func(c *Coefficients) { c.Thresholds.Decline = math.NaN() }, "thresholds.decline is NaN"},
		{"NaN weight", func(c *Coefficients) { c.Features["units"] = Coefficient{Weight: math.NaN()} },
			"features.units.weight is NaN"},
		{"infinite reference", func(c *Coefficients) {
			c.Features["total"] = Coefficient{Weight: 1, Reference: math.Inf(1)}
		}, "features.total.reference is +Inf"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			if _, err := NewModel(c); !errors.Is(err, ErrInvalidModel) || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("error %v: want ErrInvalidModel naming %q", err, tt.want)
			}
		})
	}
}

// TestLoadModelFile: the committed file loads from disk like the embedded
// copy, and a missing file is an error naming it.
func TestLoadModelFile(t *testing.T) {
	m, err := LoadModelFile("coefficients.json")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != ModelName || m.Version() != mustDefaultModel(t).Version() {
		t.Errorf("loaded %s %s", m.Name(), m.Version())
	}
	if _, err := LoadModelFile("no-such-file.json"); err == nil || !strings.Contains(err.Error(), "no-such-file.json") {
		t.Errorf("missing file: %v", err)
	}
}

// TestOrderFeatures: the order's own features come from its order.created.
func TestOrderFeatures(t *testing.T) {
	eur := func(minor int64) *orderv2.Money { return &orderv2.Money{Currency: "EUR", AmountMinor: minor} }
	order := &orderv2.OrderCreated{
		Total: eur(4550),
		Lines: []*orderv2.OrderLine{
			{Sku: "MUG-001", Quantity: 2, UnitPrice: eur(1250)},
			{Sku: "TEE-BLK-M", Quantity: 1, UnitPrice: eur(2050)},
		},
	}
	want := Features{TotalMinor: 4550, Lines: 2, Units: 3}
	if got := OrderFeatures(order); got != want {
		t.Errorf("OrderFeatures = %+v, want %+v", got, want)
	}
}

// TestTestdataModel: the model the stack's tests run with (testdata:
// the committed coefficients without the customer's history, so a test's
// one customer placing many orders is not reviewed for it) loads.
func TestTestdataModel(t *testing.T) {
	m, err := LoadModelFile("testdata/no-history.json")
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Score(Features{TotalMinor: 1000, Lines: 1, Units: 1, OrdersLastHour: 500, SpendLastHourMinor: 1e9, FirstOrder: true}); r.Decision != fraudv1.Decision_DECISION_APPROVE {
		t.Errorf("a small order after a busy hour: %v, want APPROVE", r)
	}
}
