package valid

// hexDigit reports which bytes are hexadecimal digits.
var hexDigit = func() (t [256]bool) {
	for _, c := range "0123456789abcdefABCDEF" {
		t[c] = true
	}
	return t
}()

// UUID reports whether s satisfies protovalidate's string.uuid rule: 36
// characters, hexadecimal digits in the 8-4-4-4-12 groups, either case. Like
// the rule, it checks the form only, not the version or variant.
func UUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	for i := range 36 {
		if !hexDigit[s[i]] && i != 8 && i != 13 && i != 18 && i != 23 {
			return false
		}
	}
	return true
}
