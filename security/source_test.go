package security_test

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/moatrpc/moat/security"
)

type events struct {
	mu  sync.Mutex
	all []security.Event
}

func (e *events) hook(ev security.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) last() security.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.all) == 0 {
		return security.Event{}
	}
	return e.all[len(e.all)-1]
}

func TestFileSourceRotatesAndRefusesBadMaterial(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := security.NewCA("moat.test")
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	files, err := ca.IssueFiles(dir, "auth")
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	src, err := security.WatchIdentity(files, security.WithPollInterval(time.Hour),
		security.WithAuditHook(ev.hook))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first := src.Current().Leaf().SerialNumber

	// A good new certificate, written by atomic rename, is taken.
	if _, err := ca.IssueFiles(dir, "auth"); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err != nil {
		t.Fatalf("good rotation refused: %v", err)
	}
	good := src.Current().Leaf().SerialNumber
	if good.Cmp(first) == 0 || ev.last().Kind != security.EventRotated {
		t.Fatalf("rotation not applied: serial %v, last event %+v", good, ev.last())
	}

	other, _ := security.NewCA("moat.test")
	expired, _ := ca.Issue("auth", security.WithValidity(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
	wrongID, _ := ca.Issue("profile")
	foreign, _ := other.Issue("auth")
	fresh, _ := ca.Issue("auth")
	keyPEM, _ := os.ReadFile(files.Key)

	tests := []struct {
		name      string
		cert, key []byte
		want      security.Reason
	}{
		{"expired", expired.CertPEM, expired.KeyPEM, security.ReasonExpired},
		{"wrong key", fresh.CertPEM, keyPEM, security.ReasonKeyMismatch},
		{"wrong identity", wrongID.CertPEM, wrongID.KeyPEM, security.ReasonWrongIdentity},
		{"other CA", foreign.CertPEM, foreign.KeyPEM, security.ReasonUntrusted},
		{"garbage file", []byte("not a certificate at all"), fresh.KeyPEM, security.ReasonMalformed},
		{"empty file", []byte{}, fresh.KeyPEM, security.ReasonMalformed},
	}
	for _, tt := range tests {
		// Written in place, not renamed: the watcher must cope with both.
		if err := os.WriteFile(files.Cert, tt.cert, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(files.Key, tt.key, 0o600); err != nil {
			t.Fatal(err)
		}
		err := src.Reload()
		if got := security.ReasonOf(err); got != tt.want {
			t.Fatalf("%s: reason %q (%v), want %q", tt.name, got, err, tt.want)
		}
		if src.Current().Leaf().SerialNumber.Cmp(good) != 0 {
			t.Fatalf("%s: the last good identity was replaced", tt.name)
		}
		if last := ev.last(); last.Kind != security.EventRotationFailed || last.Reason != tt.want {
			t.Fatalf("%s: audit event %+v", tt.name, last)
		}
	}

	// Fixing the files brings rotation back.
	if err := os.WriteFile(files.Cert, fresh.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Key, fresh.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err != nil || src.Current().Leaf().SerialNumber.Cmp(fresh.Leaf.SerialNumber) != 0 {
		t.Fatalf("repaired files not taken: %v", err)
	}
}

func TestFileSourceWatchesByItselfAndWarnsBeforeExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := security.NewCA("moat.test")
	_ = ca.Save(dir)
	files, _ := ca.IssueFiles(dir, "auth", security.WithLifetime(time.Hour))
	ev := &events{}
	src, err := security.WatchIdentity(files, security.WithPollInterval(20*time.Millisecond),
		security.WithAuditHook(ev.hook), security.WithExpiryWarning(1.0))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ev.last().Kind != security.EventExpiring {
		if time.Now().After(deadline) {
			t.Fatal("no expiry warning")
		}
		time.Sleep(10 * time.Millisecond)
	}
	next, _ := ca.IssueFiles(dir, "auth")
	_ = next
	for src.Current().Leaf().NotAfter.Sub(time.Now()) < 2*time.Hour {
		if time.Now().After(deadline) {
			t.Fatal("watch did not pick up the new certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchIdentityNeedsGoodFirstLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := security.WatchIdentity(security.FilesFor(dir, "auth"))
	if security.ReasonOf(err) != security.ReasonMissingFile {
		t.Fatalf("err = %v", err)
	}
}
