package security

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Rule lists the callers allowed and denied for a method. An entry is a
// service name ("profile"), a full SPIFFE ID, or "*" for any authenticated
// caller. Deny is checked first; an empty Allow allows nobody.
type Rule struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// Policy is a server's per-method authorization. Methods are keyed by full
// gRPC method ("/pkg.Service/Method") or by service ("/pkg.Service/*");
// the exact method wins over the service entry. A method with no entry
// falls to Default; a nil Default allows any authenticated caller, which
// the handshake has already limited to the server's trust domain.
//
// A service-name entry matches callers of TrustDomain only; moat's servers
// set it to their own trust domain when it is empty. Full SPIFFE IDs match
// exactly.
type Policy struct {
	TrustDomain string          `json:"trust_domain,omitempty"`
	Default     *Rule           `json:"default,omitempty"`
	Methods     map[string]Rule `json:"methods,omitempty"`
}

// LoadPolicy reads a policy from a JSON file such as:
//
//	{"default": {"allow": ["*"]},
//	 "methods": {"/moat.example.auth.v1.AuthService/Validate": {"allow": ["profile"]}}}
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("security: policy: %w", err)
	}
	var p Policy
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("security: policy %s: %w", path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("security: policy %s: %w", path, err)
	}
	return &p, nil
}

// Validate checks that method keys and entries are well formed.
func (p *Policy) Validate() error {
	check := func(r Rule, where string) error {
		for _, e := range slices.Concat(r.Allow, r.Deny) {
			if e == "*" {
				continue
			}
			if strings.HasPrefix(e, "spiffe://") {
				if _, err := spiffeid.FromString(e); err != nil {
					return fmt.Errorf("%s: entry %q: %w", where, e, err)
				}
				continue
			}
			if err := ValidateServiceName(e); err != nil {
				return fmt.Errorf("%s: entry %q: %w", where, e, err)
			}
		}
		return nil
	}
	if p.Default != nil {
		if err := check(*p.Default, "default"); err != nil {
			return err
		}
	}
	for m, r := range p.Methods {
		parts := strings.Split(m, "/")
		if len(parts) != 3 || parts[0] != "" || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("method key %q is not /pkg.Service/Method or /pkg.Service/*", m)
		}
		if err := check(r, m); err != nil {
			return err
		}
	}
	return nil
}

// Allows reports whether caller may call method.
func (p *Policy) Allows(caller spiffeid.ID, method string) bool {
	rule, ok := p.Methods[method]
	if !ok {
		if i := strings.LastIndex(method, "/"); i > 0 {
			rule, ok = p.Methods[method[:i]+"/*"]
		}
	}
	if !ok {
		if p.Default == nil {
			return true
		}
		rule = *p.Default
	}
	match := func(entries []string) bool {
		for _, e := range entries {
			if e == "*" || e == caller.String() {
				return true
			}
			if caller.TrustDomain().Name() != p.TrustDomain {
				continue
			}
			if svc, err := ServiceOf(caller); err == nil && svc == e {
				return true
			}
		}
		return false
	}
	if match(rule.Deny) {
		return false
	}
	return match(rule.Allow)
}

// errDenied is all a refused caller learns: nothing of the policy.
var errDenied = status.Error(codes.PermissionDenied, "permission denied")

// Authorize applies p to the verified caller in ctx for method. A refusal
// is audited with the caller and the method, and returned as a
// PermissionDenied status that tells the caller nothing of the policy.
func (p *Policy) Authorize(ctx context.Context, method string, audit AuditHook) error {
	caller, ok := PeerFromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no verified caller identity")
	}
	if p.Allows(caller, method) {
		return nil
	}
	audit.emit(Event{Kind: EventAuthzDenied, Reason: ReasonUnauthorized, Peer: caller.String(), Method: method})
	return errDenied
}

// UnaryAuthorizer returns a server interceptor enforcing p. It must run
// after the interceptor that puts the caller's identity in the context
// (moat's servers install both in that order).
func UnaryAuthorizer(p *Policy, audit AuditHook) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := p.Authorize(ctx, info.FullMethod, audit); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamAuthorizer is the streaming form of [UnaryAuthorizer].
func StreamAuthorizer(p *Policy, audit AuditHook) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := p.Authorize(ss.Context(), info.FullMethod, audit); err != nil {
			return err
		}
		return h(srv, ss)
	}
}
