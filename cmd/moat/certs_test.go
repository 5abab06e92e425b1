package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
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

func TestKeysTwoStepRotation(t *testing.T) {
	dir := t.TempDir()
	if _, err := moatCLI(t, "keys", "init", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "default.json")
	before, err := fields.ReadKeysetFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := fields.NewKeyring(map[string]*fields.Keyset{"default": before})
	oldSealer, _ := fields.NewSealer(ring)

	out, err := moatCLI(t, "keys", "rotate", "--dir", dir, "default")
	if err != nil || !strings.Contains(out, "primary still") {
		t.Fatalf("stage: %q %v", out, err)
	}
	staged, _ := fields.ReadKeysetFile(path, nil)
	if staged.Primary() != before.Primary() || len(staged.KeyIDs()) != 2 {
		t.Fatal("the staged key must not seal yet")
	}
	if _, err := moatCLI(t, "keys", "rotate", "--dir", dir, "--promote", "default"); err != nil {
		t.Fatal(err)
	}
	promoted, _ := fields.ReadKeysetFile(path, nil)
	if promoted.Primary() == before.Primary() {
		t.Fatal("promote did not change the primary key")
	}
	// A service still on the staged keyset opens what the promoted key
	// seals; one still on the old keyset is what the staging step avoids.
	stagedRing, _ := fields.NewKeyring(map[string]*fields.Keyset{"default": staged})
	stagedSealer, _ := fields.NewSealer(stagedRing)
	newRing, _ := fields.NewKeyring(map[string]*fields.Keyset{"default": promoted})
	newSealer, _ := fields.NewSealer(newRing)
	msg := &authv1.LoginRequest{Username: "u", Password: "p"}
	if err := newSealer.Seal(msg); err != nil {
		t.Fatal(err)
	}
	opened := proto.Clone(msg).(*authv1.LoginRequest)
	if err := stagedSealer.Unseal(opened); err != nil || opened.GetPassword() != "p" {
		t.Fatalf("staged keyset cannot open the promoted key's values: %v", err)
	}
	if err := oldSealer.Unseal(proto.Clone(msg)); err == nil {
		t.Fatal("a keyset without the new key opened its values")
	}
	if _, err := moatCLI(t, "keys", "rotate", "--dir", dir, "--promote", "default"); err == nil {
		t.Fatal("promote with nothing staged succeeded")
	}
}
