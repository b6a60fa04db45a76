package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseOrigins(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "", want: nil},
		{in: "https://shop.example, http://localhost:5173/", want: []string{"https://shop.example", "http://localhost:5173"}},
		{in: "*", want: []string{"*"}},
		{in: "shop.example", bad: true},
		{in: "https://shop.example/path", bad: true},
		{in: "ftp://shop.example", bad: true},
		{in: "https://user@shop.example", bad: true},
	} {
		got, err := parseOrigins(tc.in)
		if (err != nil) != tc.bad || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("parseOrigins(%q) = %q, %v; want %q, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true,
		"0.0.0.0:6060": false, ":6060": false, "10.0.0.5:6060": false, "example.com:6060": false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}

func TestAdminTokenFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file, empty := dir+"/token", dir+"/empty"
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token, file, want string
		bad               bool
	}{
		{token: "t", want: "t"},
		{file: file, want: "s3cret"},
		{token: "t", file: file, bad: true},
		{file: empty, bad: true},
		{file: dir + "/missing", bad: true},
	} {
		got, err := adminToken(tc.token, tc.file)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("adminToken(%q, %q) = %q, %v; want %q, bad %v", tc.token, tc.file, got, err, tc.want, tc.bad)
		}
	}
}

// TestPrintable: what shopbus dlq prints of a dead letter cannot move the
// terminal's cursor or change its title: C0, DEL and C1 controls are
// escaped, the kept ones and ordinary text are not.
func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		keep []rune
		want string
	}{
		{"plain text, ünïcode", nil, "plain text, ünïcode"},
		{"\x1b]0;owned\x07\x1b[2J", nil, `\u001b]0;owned\u0007\u001b[2J`},
		{"csi\u009b2J del\x7f", nil, `csi\u009b2J del\u007f`},
		{"{\n  \"a\": 1\n}", []rune{'\n'}, "{\n  \"a\": 1\n}"},
	} {
		if got := printable(tc.in, tc.keep...); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
