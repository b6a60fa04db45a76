package valid

import (
	"regexp"
	"regexp/syntax"
)

// Pattern matches a string.pattern rule. Patterns of the common shape, an
// anchored run of ASCII character classes each repeated a bounded or
// unbounded number of times (`^[A-Z]{3}$`, `^[a-z][a-z0-9_]*\.[a-z]+$`), or
// alternatives of that shape (`^$|^[A-Z0-9]{4,16}$`), are matched by greedy
// scans; every other pattern by Go's regexp, the engine protovalidate uses.
// Both give the same answer.
type Pattern struct {
	alternatives [][]run
	re           *regexp.Regexp // nil when the alternatives match
}

// run is one element of a scan pattern: between min and max bytes (max -1:
// no limit) from set.
type run struct {
	set      [128]bool
	min, max int
}

// MustCompile compiles expr, a string.pattern, and panics if it is not a
// valid RE2 expression. Generated code calls it for the patterns buf has
// already compiled.
func MustCompile(expr string) *Pattern {
	if alternatives, ok := scanPattern(expr); ok {
		return &Pattern{alternatives: alternatives}
	}
	return &Pattern{re: regexp.MustCompile(expr)}
}

// MatchString reports whether s matches the pattern.
func (p *Pattern) MatchString(s string) bool {
	if p.re != nil {
		return p.re.MatchString(s)
	}
	for _, runs := range p.alternatives {
		if scan(runs, s) {
			return true
		}
	}
	return false
}

// scan reports whether s is matched by runs, one after the other.
func scan(runs []run, s string) bool {
	pos := 0
	for i := range runs {
		r := &runs[i]
		n := 0
		for pos < len(s) && (r.max < 0 || n < r.max) && s[pos] < 128 && r.set[s[pos]] {
			pos++
			n++
		}
		if n < r.min {
			return false
		}
	}
	return pos == len(s)
}

// scanPattern compiles expr to alternatives of runs when greedy scans match
// exactly what the regular expression matches: expr is one or more
// alternatives, each ^…$ around a sequence of ASCII literals and classes
// with repetition counts (scanConcat).
func scanPattern(expr string) ([][]run, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, false
	}
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpAlternate {
		subs = re.Sub
	}
	var alternatives [][]run
	for _, sub := range subs {
		runs, ok := scanConcat(sub)
		if !ok {
			return nil, false
		}
		alternatives = append(alternatives, runs)
	}
	return alternatives, true
}

// scanConcat compiles re to runs when it is ^…$ around a sequence of ASCII
// literals and classes with repetition counts, and each run of variable
// length shares no byte with the runs that could match next (up to the next
// one that must match at least one byte). Then no match can give a byte to a
// later run that the scan gave to an earlier one.
func scanConcat(re *syntax.Regexp) ([]run, bool) {
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 ||
		re.Sub[0].Op != syntax.OpBeginText || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return nil, false
	}
	var runs []run
	for _, sub := range re.Sub[1 : len(re.Sub)-1] {
		min, max := 1, 1
		switch sub.Op {
		case syntax.OpStar:
			min, max, sub = 0, -1, sub.Sub[0]
		case syntax.OpPlus:
			min, max, sub = 1, -1, sub.Sub[0]
		case syntax.OpQuest:
			min, max, sub = 0, 1, sub.Sub[0]
		case syntax.OpRepeat:
			min, max, sub = sub.Min, sub.Max, sub.Sub[0]
		}
		if sub.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		switch sub.Op {
		case syntax.OpLiteral:
			if min != 1 || max != 1 { // a repeated literal: only a single rune
				if len(sub.Rune) != 1 {
					return nil, false
				}
			}
			for _, c := range sub.Rune {
				if c >= 128 {
					return nil, false
				}
				var r run
				r.set[c], r.min, r.max = true, min, max
				runs = append(runs, r)
			}
		case syntax.OpCharClass:
			r := run{min: min, max: max}
			for i := 0; i < len(sub.Rune); i += 2 {
				lo, hi := sub.Rune[i], sub.Rune[i+1]
				if hi >= 128 {
					return nil, false
				}
				for c := lo; c <= hi; c++ {
					r.set[c] = true
				}
			}
			runs = append(runs, r)
		default:
			return nil, false
		}
	}
	for i, r := range runs {
		if r.min == r.max {
			continue
		}
		for _, next := range runs[i+1:] {
			for c := range 128 {
				if r.set[c] && next.set[c] {
					return nil, false
				}
			}
			if next.min > 0 {
				break
			}
		}
	}
	return runs, true
}
