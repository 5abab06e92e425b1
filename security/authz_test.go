package security_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/moatrpc/moat/security"
)

func TestPolicyDecisions(t *testing.T) {
	t.Parallel()
	p := &security.Policy{
		TrustDomain: "moat.test",
		Default:     &security.Rule{Allow: []string{"*"}},
		Methods: map[string]security.Rule{
			"/auth.v1.AuthService/Validate": {Allow: []string{"profile", "spiffe://moat.test/svc/gateway"}},
			"/auth.v1.AuthService/*":        {Allow: []string{"*"}, Deny: []string{"intruder"}},
			"/admin.v1.AdminService/*":      {Allow: []string{"*"}, Deny: []string{"*"}},
		},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	id := func(s string) spiffeid.ID { return spiffeid.RequireFromString(s) }
	tests := []struct {
		name   string
		caller string
		method string
		want   bool
	}{
		{"allowed by service name", "spiffe://moat.test/svc/profile", "/auth.v1.AuthService/Validate", true},
		{"allowed by SPIFFE ID", "spiffe://moat.test/svc/gateway", "/auth.v1.AuthService/Validate", true},
		{"denied: not on the method's list", "spiffe://moat.test/svc/caller", "/auth.v1.AuthService/Validate", false},
		{"service entry allows", "spiffe://moat.test/svc/caller", "/auth.v1.AuthService/Login", true},
		{"deny over allow", "spiffe://moat.test/svc/intruder", "/auth.v1.AuthService/Login", false},
		{"deny star over allow star", "spiffe://moat.test/svc/caller", "/admin.v1.AdminService/Wipe", false},
		{"unknown method falls to default", "spiffe://moat.test/svc/caller", "/x.v1.X/Y", true},
		{"other trust domain does not match a service name", "spiffe://other.test/svc/profile",
			"/auth.v1.AuthService/Validate", false},
	}
	for _, tt := range tests {
		if got := p.Allows(id(tt.caller), tt.method); got != tt.want {
			t.Errorf("%s: Allows(%s, %s) = %v, want %v", tt.name, tt.caller, tt.method, got, tt.want)
		}
	}
	closed := &security.Policy{Default: &security.Rule{}}
	if closed.Allows(id("spiffe://moat.test/svc/caller"), "/x.v1.X/Y") {
		t.Error("an empty default rule must allow nobody")
	}
	open := &security.Policy{}
	if !open.Allows(id("spiffe://moat.test/svc/caller"), "/x.v1.X/Y") {
		t.Error("no default rule must allow authenticated callers")
	}
}

func TestLoadPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	_ = os.WriteFile(good, []byte(`{"methods": {"/a.v1.A/B": {"allow": ["profile"]}}}`), 0o600)
	if _, err := security.LoadPolicy(good); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"unknown field": `{"method": {}}`,
		"bad method":    `{"methods": {"A/B": {"allow": ["x"]}}}`,
		"bad entry":     `{"methods": {"/a.v1.A/B": {"allow": ["Not A Service"]}}}`,
		"bad id":        `{"default": {"allow": ["spiffe://"]}}`,
		"not json":      `allow everyone`,
	} {
		path := filepath.Join(dir, "p.json")
		_ = os.WriteFile(path, []byte(body), 0o600)
		if _, err := security.LoadPolicy(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
