package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatrpc/moat/security"
)

// moatCLI runs the moat command with args and returns stdout and the error.
func moatCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestCertsLifecycleCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := moatCLI(t, "certs", "init", "--dir", dir, "--trust-domain", "moat.test")
	if err != nil || !strings.Contains(out, "created CA for trust domain moat.test") {
		t.Fatalf("init: %q %v", out, err)
	}
	if _, err := moatCLI(t, "certs", "init", "--dir", dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second init without --force: %v", err)
	}
	out, err = moatCLI(t, "certs", "issue", "--dir", dir, "auth", "caller")
	if err != nil || !strings.Contains(out, "issued spiffe://moat.test/svc/auth") {
		t.Fatalf("issue: %q %v", out, err)
	}
	if _, err := moatCLI(t, "certs", "issue", "--dir", dir, "Not Valid"); err == nil {
		t.Fatal("issue accepted an invalid service name")
	}
	if _, err := moatCLI(t, "certs", "issue", "--dir", t.TempDir(), "auth"); err == nil ||
		!strings.Contains(err.Error(), "moat certs init") {
		t.Fatalf("issue without a CA: %v", err)
	}

	files := security.FilesFor(dir, "auth")
	out, err = moatCLI(t, "certs", "inspect", "--dir", dir, files.Cert)
	for _, want := range []string{"identity:   spiffe://moat.test/svc/auth", "hosts:      localhost, 127.0.0.1, ::1",
		"TLS server (serverAuth), TLS client (clientAuth)", "ECDSA P-256", "check:      ok"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("inspect lacks %q: %q %v", want, out, err)
		}
	}
	garbage := filepath.Join(dir, "garbage.pem")
	_ = os.WriteFile(garbage, []byte("nothing"), 0o600)
	if _, err := moatCLI(t, "certs", "inspect", garbage); err == nil {
		t.Fatal("inspect of garbage succeeded")
	}

	// Leaf rotation replaces the certificate.
	before, _ := security.LoadIdentity(files.Cert, files.Key, files.Bundle)
	if _, err := moatCLI(t, "certs", "rotate", "--dir", dir, "auth"); err != nil {
		t.Fatal(err)
	}
	after, err := security.LoadIdentity(files.Cert, files.Key, files.Bundle)
	if err != nil || after.Leaf().SerialNumber.Cmp(before.Leaf().SerialNumber) == 0 {
		t.Fatalf("rotate did not reissue: %v", err)
	}

	// Revocation list.
	out, err = moatCLI(t, "certs", "revoke", "--dir", dir, security.FilesFor(dir, "caller").Cert)
	if err != nil || !strings.Contains(out, "revoked serial") {
		t.Fatalf("revoke: %q %v", out, err)
	}
	caller, _ := security.LoadIdentity(security.FilesFor(dir, "caller").Cert,
		security.FilesFor(dir, "caller").Key, files.Bundle)
	crl := security.NewCRLFile(filepath.Join(dir, security.CRLFileName), after)
	if err := crl.Check([]*x509Cert{caller.Leaf()}); !isRevoked(err) {
		t.Fatalf("revoked certificate passes the list: %v", err)
	}
	if err := crl.Check([]*x509Cert{after.Leaf()}); err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}

	// Root rotation in two steps.
	out, err = moatCLI(t, "certs", "rotate", "--dir", dir, "--root-start")
	if err != nil || !strings.Contains(out, "reissued auth from the new root") {
		t.Fatalf("root start: %q %v", out, err)
	}
	mid, err := security.LoadIdentity(files.Cert, files.Key, files.Bundle)
	if err != nil || len(mid.Roots()) != 2 {
		t.Fatalf("during root rotation: %v, %d roots", err, len(mid.Roots()))
	}
	if _, err := moatCLI(t, "certs", "rotate", "--dir", dir, "--root-finish"); err != nil {
		t.Fatal(err)
	}
	done, err := security.LoadIdentity(files.Cert, files.Key, files.Bundle)
	if err != nil || len(done.Roots()) != 1 || done.Roots()[0].Equal(before.Roots()[0]) {
		t.Fatalf("after root rotation: %v", err)
	}
}

type x509Cert = x509.Certificate

func isRevoked(err error) bool { return errors.Is(err, security.ErrRevoked) }
