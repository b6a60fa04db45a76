package main_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestNoSecretInHelp: the admin token and the passwords in DATABASE_URL and
// NATS_URL, taken from the environment, appear in no command's -h.
func TestNoSecretInHelp(t *testing.T) {
	t.Parallel()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"t0ken-s3cret", "pg-pa55word", "nats-t0ken", "second-pa55word", "param-pa55word"}
	env := []string{"SHOPBUS_ADMIN_TOKEN=" + secrets[0],
		// A password in the user info, and one as a parameter.
		"DATABASE_URL=postgres://shop:" + secrets[1] + "@db.internal:5432/shop?sslpassword=" + secrets[4],
		// A NATS token, and a second server of a list with its password.
		"NATS_URL=nats://" + secrets[2] + "@nats-a.internal:4222,nats://shop:" + secrets[3] + "@nats-b.internal:4222"}
	for _, args := range [][]string{{"dev", "-h"}, {"serve", "gateway", "-h"}, {"serve", "order", "-h"}, {"serve", "inventory", "-h"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(cmd.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "-admin-token") {
			t.Fatalf("%v printed no help:\n%s", args, out)
		}
		for _, s := range secrets {
			if strings.Contains(string(out), s) {
				t.Errorf("shopbus %s printed the secret %q:\n%s", strings.Join(args, " "), s, out)
			}
		}
	}
}

// TestServeNeedsAuthentication: serve refuses to start open unless told
// to.
func TestServeNeedsAuthentication(t *testing.T) {
	t.Parallel()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "inventory", "--addr", "127.0.0.1:0")
	cmd.Env = append(cmd.Environ(), "SHOPBUS_ADMIN_TOKEN=", "SHOPBUS_JWT_KEY=")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "no authentication") || !strings.Contains(string(out), "--insecure") {
		t.Errorf("serve without authentication: %v\n%s", err, out)
	}
	cmd = exec.Command(bin, "serve", "inventory", "--addr", "127.0.0.1:0", "--jwt-key", "/nonexistent.pem")
	cmd.Env = append(cmd.Environ(), "SHOPBUS_JWT_AUDIENCE=")
	if out, err := cmd.CombinedOutput(); !errors.As(err, &exit) || !strings.Contains(string(out), "--jwt-key needs --jwt-audience") {
		t.Errorf("serve with a key and no audience: %v\n%s", err, out)
	}
}

// TestNoSecretInErrors: a NATS URL that does not parse is not quoted, with
// the password it carries, in the error.
func TestNoSecretInErrors(t *testing.T) {
	t.Parallel()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "inventory", "--addr", "127.0.0.1:0")
	cmd.Env = append(cmd.Environ(), "SHOPBUS_ADMIN_TOKEN=x", "NATS_URL=nats://shop:url-pa55word@127.0.0.1:notaport")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "does not parse") || strings.Contains(string(out), "url-pa55word") {
		t.Errorf("serve with a malformed NATS URL said:\n%s", out)
	}
}
