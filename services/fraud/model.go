// model.go is the model, pure logic without I/O: a logistic regression over
// Features the service derives from order.created and from its own read
// model of each customer's recent orders. Its coefficients are the committed
// file coefficients.json (DefaultModel); MODEL.md explains every feature,
// weight and threshold, and how to change them.

package fraud

import (
	"bytes"
	_ "embed" // coefficients.json
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"

	orderv2 "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	fraudv1 "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
)

// ModelName is the name of the model, order.scored's model field.
const ModelName = "fraud-logreg"

// MaxReasons is the most reason codes Score returns.
const MaxReasons = 3

// Features are what the model knows about one order. The first three come
// from the order's order.created (OrderFeatures); the others from the
// service's read model of the customer's orders, built from order.created
// events: they count the customer's orders created in the hour before this
// one (by created_at, so scoring a replayed event gives the same result),
// excluding this order. Negative values are read as zero.
type Features struct {
	// TotalMinor is the order's total in minor units of its currency (cents
	// for EUR). The model reads it as log(1 + TotalMinor/100).
	TotalMinor int64
	// Lines is the number of order lines. Each line is a distinct SKU
	// (CreateOrder refuses a repeated one), so it is also the number of
	// distinct SKUs.
	Lines int
	// Units is the number of units ordered, the sum of the lines'
	// quantities. The model reads it as log(1 + Units).
	Units int
	// OrdersLastHour is how many orders the customer placed in the hour
	// before this one.
	OrdersLastHour int
	// SpendLastHourMinor is the sum of the totals of those orders, in minor
	// units. The model reads it as log(1 + SpendLastHourMinor/100).
	SpendLastHourMinor int64
	// FirstOrder is true when the read model holds no earlier order of the
	// customer at all (it keeps HistoryKeep, 90 days).
	FirstOrder bool
}

// OrderFeatures returns the Features an order.created carries itself:
// TotalMinor, Lines and Units. The caller sets the customer's history
// (OrdersLastHour, SpendLastHourMinor, FirstOrder) from its read model.
func OrderFeatures(order *orderv2.OrderCreated) Features {
	f := Features{TotalMinor: order.GetTotal().GetAmountMinor(), Lines: len(order.GetLines())}
	for _, l := range order.GetLines() {
		f.Units += int(l.GetQuantity())
	}
	return f
}

// feature is one input of the model: how it is read from Features, how it
// is scaled, and the reason code Score reports when it raises the score.
type feature struct {
	name   string
	reason string
	raw    func(Features) float64
	scale  func(float64) float64
}

// perMajorUnit reads an amount in minor units as log(1 + amount/100): the
// log of the amount in major units for a currency with two decimals.
func perMajorUnit(v float64) float64 { return math.Log1p(v / 100) }

func identity(v float64) float64 { return v }

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// features is every feature of the model, in the order used to break ties
// between equal contributions. A coefficients file names exactly these.
var features = []feature{
	{"total", "HIGH_TOTAL", func(f Features) float64 { return float64(f.TotalMinor) }, perMajorUnit},
	{"lines", "MANY_LINES", func(f Features) float64 { return float64(f.Lines) }, identity},
	{"units", "MANY_UNITS", func(f Features) float64 { return float64(f.Units) }, math.Log1p},
	{"orders_last_hour", "MANY_ORDERS_LAST_HOUR", func(f Features) float64 { return float64(f.OrdersLastHour) }, identity},
	{"spend_last_hour", "HIGH_SPEND_LAST_HOUR", func(f Features) float64 { return float64(f.SpendLastHourMinor) }, perMajorUnit},
	{"first_order", "FIRST_ORDER", func(f Features) float64 { return boolean(f.FirstOrder) }, identity},
}

// FeatureNames returns the names of the model's features, as a
// coefficients file names them.
func FeatureNames() []string {
	names := make([]string, len(features))
	for i, f := range features {
		names[i] = f.name
	}
	return names
}

// Coefficients is the content of a coefficients file (coefficients.json).
type Coefficients struct {
	// Model is the model's name; it must be ModelName.
	Model string `json:"model"`
	// ModelVersion is the version of these coefficients, order.scored's
	// model_version: 1 to 64 characters. Every change of a coefficient or
	// threshold gets a new version.
	ModelVersion string `json:"model_version"`
	// Bias is the log-odds of fraud of the reference order, the order
	// whose every feature is at its Reference.
	Bias float64 `json:"bias"`
	// Thresholds map the score to a decision.
	Thresholds Thresholds `json:"thresholds"`
	// Features holds one Coefficient per feature, by name (FeatureNames).
	Features map[string]Coefficient `json:"features"`
}

// Coefficient is the part of one feature in the score.
type Coefficient struct {
	// Weight is how much the log-odds of fraud rise per unit of the scaled
	// feature above its reference. It is never negative: every feature is
	// oriented so that more of it is riskier, which the reason codes say.
	Weight float64 `json:"weight"`
	// Reference is the feature's value, in its own unit (minor units,
	// lines, units, orders; 0 or 1 for first_order), in a typical order.
	// A feature above it raises the score and may be a reason; below it,
	// it lowers the score.
	Reference float64 `json:"reference"`
}

// Thresholds map a score to a decision: below Review it is
// DECISION_APPROVE, from Review to below Decline DECISION_REVIEW, from
// Decline up DECISION_DECLINE. 0 < Review < Decline < 1.
type Thresholds struct {
	// Review is the lowest score that asks for a person's review.
	Review float64 `json:"review"`
	// Decline is the lowest score that declines the order.
	Decline float64 `json:"decline"`
}

// Decision returns the decision for a score.
func (t Thresholds) Decision(score float64) fraudv1.Decision {
	switch {
	case score >= t.Decline:
		return fraudv1.Decision_DECISION_DECLINE
	case score >= t.Review:
		return fraudv1.Decision_DECISION_REVIEW
	default:
		return fraudv1.Decision_DECISION_APPROVE
	}
}

// Result is the model's assessment of one order: what order.scored carries.
type Result struct {
	// Score is the probability of fraud, from 0 to 1.
	Score float64
	// Decision is what the thresholds make of the score.
	Decision fraudv1.Decision
	// Reasons are the reason codes of the features that raised the score
	// most, largest contribution first, at most MaxReasons; empty when no
	// feature is above its reference. Each matches order.scored's
	// reason_codes pattern.
	Reasons []string
}

// Model scores orders. It is immutable and safe for concurrent use.
type Model struct {
	version    string
	bias       float64
	thresholds Thresholds
	terms      []term
}

// term is one feature with its coefficient.
type term struct {
	feature
	weight float64
	// offset is the scaled reference.
	offset float64
}

// ErrInvalidModel is wrapped by every error of NewModel and LoadModel.
var ErrInvalidModel = errors.New("fraud: invalid model")

// NewModel returns the model of c, or an error wrapping ErrInvalidModel
// that names what is wrong: another model's name, an empty or overlong
// version, an unknown or a missing feature, a coefficient or threshold
// that is NaN or infinite, a negative weight or reference, or thresholds
// that are not 0 < review < decline < 1.
func NewModel(c Coefficients) (*Model, error) {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if c.Model != ModelName {
		bad("model %q, want %q", c.Model, ModelName)
	}
	if n := len(c.ModelVersion); n == 0 || n > 64 || strings.TrimSpace(c.ModelVersion) != c.ModelVersion {
		bad("model_version %q: want 1 to 64 characters without surrounding spaces", c.ModelVersion)
	}
	finite := func(name string, v float64) bool {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			bad("%s is %v, want a finite number", name, v)
			return false
		}
		return true
	}
	finite("bias", c.Bias)
	review, decline := c.Thresholds.Review, c.Thresholds.Decline
	if finite("thresholds.review", review) && finite("thresholds.decline", decline) &&
		!(0 < review && review < decline && decline < 1) {
		bad("thresholds review %v and decline %v: want 0 < review < decline < 1", review, decline)
	}
	known := FeatureNames()
	for _, name := range slices.Sorted(maps.Keys(c.Features)) {
		if !slices.Contains(known, name) {
			bad("unknown feature %q (the model's features are %s)", name, strings.Join(known, ", "))
		}
	}
	m := &Model{version: c.ModelVersion, bias: c.Bias, thresholds: c.Thresholds}
	for _, f := range features {
		coef, ok := c.Features[f.name]
		if !ok {
			bad("missing feature %q", f.name)
			continue
		}
		w, r := "features."+f.name+".weight", "features."+f.name+".reference"
		if finite(w, coef.Weight) && coef.Weight < 0 {
			bad("%s is %v: weights are never negative (more of a feature is riskier)", w, coef.Weight)
		}
		if finite(r, coef.Reference) && coef.Reference < 0 {
			bad("%s is %v, want 0 or more", r, coef.Reference)
		}
		m.terms = append(m.terms, term{feature: f, weight: coef.Weight, offset: f.scale(coef.Reference)})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidModel, strings.Join(problems, "; "))
	}
	return m, nil
}

// LoadModel parses a coefficients file and returns its model (NewModel).
// A field the file format does not have, or anything after the JSON
// object, is an error too.
func LoadModel(data []byte) (*Model, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Coefficients
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: coefficients: %w", ErrInvalidModel, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: coefficients: data after the JSON object", ErrInvalidModel)
	}
	return NewModel(c)
}

// LoadModelFile reads a coefficients file from path and returns its model
// (LoadModel).
func LoadModelFile(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fraud: model: %w", err)
	}
	m, err := LoadModel(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

//go:embed coefficients.json
var defaultCoefficients []byte

var defaultModel = sync.OnceValues(func() (*Model, error) { return LoadModel(defaultCoefficients) })

// DefaultModel returns the model of the committed coefficients.json,
// embedded in the binary. Its error is never set in a binary whose tests
// passed; it is returned rather than panicked on.
func DefaultModel() (*Model, error) {
	return defaultModel()
}

// Name returns the model's name, ModelName.
func (m *Model) Name() string { return ModelName }

// Version returns the model's version, from its coefficients file.
func (m *Model) Version() string { return m.version }

// Thresholds returns the model's decision thresholds.
func (m *Model) Thresholds() Thresholds { return m.thresholds }

// Score scores one order: the probability of fraud
// sigmoid(bias + Σ weight · (scaled feature − scaled reference)), the
// decision for it, and the reason codes of the features that raised it
// most (contribution above zero, largest first, ties in feature order, at
// most MaxReasons). It is deterministic: the same Features always give the
// same Result.
func (m *Model) Score(f Features) Result {
	type contribution struct {
		reason string
		value  float64
	}
	z := m.bias
	var up []contribution
	for _, t := range m.terms {
		c := t.weight * (t.scale(max(t.raw(f), 0)) - t.offset)
		z += c
		if c > 0 {
			up = append(up, contribution{t.reason, c})
		}
	}
	slices.SortStableFunc(up, func(a, b contribution) int {
		switch {
		case a.value > b.value:
			return -1
		case a.value < b.value:
			return 1
		}
		return 0
	})
	reasons := make([]string, 0, MaxReasons)
	for _, c := range up[:min(len(up), MaxReasons)] {
		reasons = append(reasons, c.reason)
	}
	score := sigmoid(z)
	return Result{Score: score, Decision: m.thresholds.Decision(score), Reasons: reasons}
}

// sigmoid is the logistic function, computed without overflow for any z.
func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}
