package valid

import (
	"regexp"
	"testing"
)

// The uuid rule's own expression, as protovalidate writes it.
var uuidRegexp = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

var uuidSeeds = []string{
	"", "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2b", "0193A5E2-7C1D-7B3E-9F4A-2D6C8E0F1A2B",
	"0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2", "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2bb",
	"0193a5e27c1d-7b3e-9f4a-2d6c8e0f1a2b-", "0193a5e2-7c1d-7b3e-9f4g-2d6c8e0f1a2b",
	"0193a5e2_7c1d_7b3e_9f4a_2d6c8e0f1a2b", "{0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2}",
	"0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2\xff", "0193a5e2-7c1d-7b3e-9f4a-2d6c8e0f1a2é",
}

func TestUUID(t *testing.T) {
	for _, s := range uuidSeeds {
		if got, want := UUID(s), uuidRegexp.MatchString(s); got != want {
			t.Errorf("UUID(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzUUID(f *testing.F) {
	for _, s := range uuidSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := UUID(s), uuidRegexp.MatchString(s); got != want {
			t.Errorf("UUID(%q) = %v, want %v", s, got, want)
		}
	})
}

// patterns are the shapes the scan must take or refuse. scan says which.
var patterns = []struct {
	expr string
	scan bool
}{
	// The contracts' own patterns.
	{`^[A-Z]{3}$`, true},
	{`^[A-Z0-9]{4,16}$`, true},
	{`^[A-Z0-9][A-Z0-9-]{2,31}$`, true},
	{`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`, true},
	// Literals, optional and unbounded runs.
	{`^ab?c+$`, true},
	{`^v[0-9]{1,}$`, true},
	{`^x{0}y$`, true},
	// A variable run that could give bytes to a later one: regexp decides.
	{`^a*b?a$`, false},
	{`^[a-z]*[a-z0-9]$`, false},
	{`^[0-9]{2,4}[0-9]$`, false},
	// Alternatives of that shape.
	{`^$|^[A-Z0-9]{4,16}$`, true},
	{`^[a-z]+$|^[0-9]{2}$`, true},
	{`^[a-z]+$|[0-9]{2}`, false},
	// Not anchored, not ASCII, case folding, groups: regexp.
	{`[A-Z]{3}`, false},
	{`^[A-Z]{3}`, false},
	{`^é+$`, false},
	{`^(?i)[a-z]+$`, false},
	{`^(ab|cd)$`, false},
	{`^(?:ab){2}$`, false},
	{`^.+$`, false},
	{`^\d+$`, true},
}

var patternInputs = []string{
	"", "EUR", "eur", "EU", "EURO", "E1R", "ABCD", "ABCD1234ABCD1234", "ABCD1234ABCD12345",
	"SKU-1", "MUG-001", "-MUG", "M", "MU", "MUG", "A234567890123456789012345678901", "A2345678901234567890123456789012",
	"order.created", "order.", ".created", "order.created.v1", "Order.created", "order_x.y9", "a.b",
	"ac", "abc", "abbc", "ac\n", "a", "aa", "aba", "ba", "v", "v1", "v123", "y", "xy",
	"12", "123", "12345", "123456", "ab", "cd", "abab", "é", "éé", "\xff", "EU\xff", "EUR\n",
}

func TestPatternAgreesWithRegexp(t *testing.T) {
	for _, p := range patterns {
		compiled := MustCompile(p.expr)
		if scanned := compiled.re == nil; scanned != p.scan {
			t.Errorf("%s: scanned = %v, want %v", p.expr, scanned, p.scan)
		}
		re := regexp.MustCompile(p.expr)
		for _, s := range patternInputs {
			if got, want := compiled.MatchString(s), re.MatchString(s); got != want {
				t.Errorf("%s on %q: %v, regexp says %v", p.expr, s, got, want)
			}
		}
	}
}

func FuzzPattern(f *testing.F) {
	for i := range patterns {
		for _, s := range patternInputs {
			f.Add(uint8(i), s)
		}
	}
	compiled := make([]*Pattern, len(patterns))
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		compiled[i], res[i] = MustCompile(p.expr), regexp.MustCompile(p.expr)
	}
	f.Fuzz(func(t *testing.T, i uint8, s string) {
		n := int(i) % len(patterns)
		if got, want := compiled[n].MatchString(s), res[n].MatchString(s); got != want {
			t.Errorf("%s on %q: %v, regexp says %v", patterns[n].expr, s, got, want)
		}
	})
}

func BenchmarkPattern(b *testing.B) {
	for _, expr := range []string{`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`, `^[A-Z0-9][A-Z0-9-]{2,31}$`} {
		p, re := MustCompile(expr), regexp.MustCompile(expr)
		b.Run("scan "+expr, func(b *testing.B) {
			for b.Loop() {
				p.MatchString("order.created")
			}
		})
		b.Run("regexp "+expr, func(b *testing.B) {
			for b.Loop() {
				re.MatchString("order.created")
			}
		})
	}
}
