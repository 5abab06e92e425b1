package e2e

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/services"
	"github.com/moatrpc/moat/services/scenario"
)

// newTerminator starts what a mesh sidecar or a load balancer in front of
// a service does: it holds a valid workload certificate (front), ends the
// caller's TLS, reads the plaintext, and opens its own TLS to the service
// with its own certificate (back).
func newTerminator(t *testing.T, front, back *security.Identity, upstream string) *relay {
	t.Helper()
	sconf, err := security.ServerTLSConfig(front)
	if err != nil {
		t.Fatal(err)
	}
	cconf, err := security.ClientTLSConfig(back, front.Service())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", sconf)
	if err != nil {
		t.Fatal(err)
	}
	return startRelay(t, ln, func() (net.Conn, error) { return tls.Dial("tcp", upstream, cconf) })
}

// A proxy that terminates TLS with a trusted certificate sees PII (TLS
// and redaction are its only protection) but SECRET fields only as
// ciphertext: session tokens stay sealed end to end.
func TestTLSTerminatingProxySeesSecretsOnlyAsCiphertext(t *testing.T) {
	e := startEnv(t)
	profileAddr := freeAddr(t)
	e.startProc("auth")
	e.startProc("profile", "MOAT_ADDRESS="+profileAddr)
	reg := e.registry("caller", e.Consul.Addr())
	for _, name := range []string{"auth", "profile"} {
		waitFor(t, 20*time.Second, name+" registered", func() bool {
			_, err := reg.GetService(ctxT(t, 5*time.Second), name)
			return err == nil
		})
	}
	// The sidecar holds profile's certificate in front and its own behind.
	sidecar, err := e.CA.Identity("sidecar")
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTerminator(t, e.identity("profile"), sidecar, profileAddr)

	// The caller finds profile behind the proxy.
	viaProxy := registryWith(t, "profile", proxy.addr())
	caller := e.identity("caller")
	authConn, err := rpc.Dial(reg, caller, "auth", e.keyring())
	if err != nil {
		t.Fatal(err)
	}
	defer authConn.Close()
	profileConn, err := rpc.Dial(viaProxy, caller, "profile", e.keyring())
	if err != nil {
		t.Fatal(err)
	}
	defer profileConn.Close()

	users, _ := services.Users()
	res := scenario.Run(ctxT(t, time.Minute), authConn, profileConn, users, 1)
	if len(res.Errors) > 0 {
		t.Fatalf("scenario through the proxy: %v", res.Errors)
	}
	plain, _ := proxy.capture()
	// Public fields of the responses show that the proxy reads plaintext.
	if !bytes.Contains(plain, []byte(users[0].UserID)) {
		t.Fatal("the proxy did not see the plaintext gRPC stream")
	}
	if found := containsAny(plain, res.Tokens); len(found) > 0 {
		t.Fatalf("the proxy read %d session tokens (SECRET) in clear", len(found))
	}
	if !bytes.Contains(plain, []byte("moat:v1:")) {
		t.Fatal("no sealed envelope seen by the proxy")
	}
	var pii []string
	for _, u := range users {
		pii = append(pii, u.Phone, u.Email)
	}
	if found := containsAny(plain, pii); len(found) != len(pii) {
		t.Fatalf("PII is expected to be readable by a TLS-terminating proxy (TLS and redaction are its "+
			"only protection); saw %d of %d values", len(found), len(pii))
	}
}
