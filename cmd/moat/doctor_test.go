package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatrpc/moat/internal/devenv"
	"github.com/moatrpc/moat/security"
)

func TestDoctor(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env, err := devenv.Start(ctx, devenv.EnvConfig{Dir: t.TempDir(), TrustDomain: "moat.test",
		Services: []string{"auth", "caller"}})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()

	var out bytes.Buffer
	err = report(&out, doctor(ctx, env.CertsDir, "caller", env.Consul.Addr(), ""))
	if err != nil {
		t.Fatalf("healthy environment: %v\n%s", err, out.String())
	}
	for _, want := range []string{"√ workload certificate auth (spiffe://moat.test/svc/auth",
		"√ Consul refuses clients without a certificate", "√ Consul API with a client certificate"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}

	// An expired certificate and a broken one are reported with their fix.
	if _, err := env.CA.IssueFiles(env.CertsDir, "auth",
		security.WithValidity(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(env.CertsDir, "broken.pem"), []byte("x"), 0o600)
	_ = os.WriteFile(filepath.Join(env.CertsDir, "broken-key.pem"), []byte("x"), 0o600)
	out.Reset()
	err = report(&out, doctor(ctx, env.CertsDir, "caller", env.Consul.Addr(), ""))
	if err == nil {
		t.Fatalf("broken environment passed:\n%s", out.String())
	}
	for _, want := range []string{"× workload certificate auth", "expired at", "fix: moat certs issue",
		"× workload certificate broken"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}

	// A key without its certificate, and a revoked certificate.
	_ = os.WriteFile(filepath.Join(env.CertsDir, "lonely-key.pem"), []byte("x"), 0o600)
	caller, _ := security.LoadIdentity(security.FilesFor(env.CertsDir, "caller").Cert,
		security.FilesFor(env.CertsDir, "caller").Key, security.FilesFor(env.CertsDir, "caller").Bundle)
	if _, err := env.CA.Revoke(env.CertsDir, time.Hour, caller.Leaf().SerialNumber); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	_ = report(&out, doctor(ctx, env.CertsDir, "caller", env.Consul.Addr(), ""))
	for _, want := range []string{"lonely-key.pem has no certificate beside it", "is revoked"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	_ = report(&out, doctor(ctx, t.TempDir(), "caller", "", ""))
	if !strings.Contains(out.String(), "fix: moat certs init") {
		t.Fatalf("missing CA not reported with its fix:\n%s", out.String())
	}
}
