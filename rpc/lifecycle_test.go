package rpc_test

import (
	"context"
	"crypto/tls"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
)

// fileService starts name with its identity read from files in dir, so
// that rewriting the files rotates it.
func fileService(t *testing.T, dir, name string, reg registry.Registry, opts ...rpc.Option) *rpc.Service {
	t.Helper()
	f := security.FilesFor(dir, name)
	opts = append([]rpc.Option{
		rpc.WithIdentityFiles(f.Cert, f.Key, f.Bundle),
		rpc.WithIdentityPollInterval(20 * time.Millisecond),
		rpc.WithRegistry(reg), rpc.WithoutSignalHandling(), rpc.WithKeyring(testKeyring(t)),
	}, opts...)
	svc, err := rpc.NewService(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	authv1.RegisterAuthServiceServer(svc.Server(), &whoami{node: name})
	if err := svc.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop(context.Background()) })
	return svc
}

func writeBundle(t *testing.T, dir string, cas ...*security.CA) {
	t.Helper()
	if err := security.WriteBundle(dir, cas...); err != nil {
		t.Fatal(err)
	}
}

// waitServing waits until the service's identity is the certificate now in
// its files.
func waitServing(t *testing.T, svc *rpc.Service, dir string) {
	t.Helper()
	want, err := security.LoadIdentity(security.FilesFor(dir, svc.Name()).Cert,
		security.FilesFor(dir, svc.Name()).Key, security.FilesFor(dir, svc.Name()).Bundle)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for svc.Identity().Leaf().SerialNumber.Cmp(want.Leaf().SerialNumber) != 0 ||
		len(svc.Identity().Roots()) != len(want.Roots()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take its new identity", svc.Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// presentedSerial dials the server afresh and returns the serial of the
// certificate it presents.
func presentedSerial(t *testing.T, svc *rpc.Service, client *security.Identity) *big.Int {
	t.Helper()
	conf, err := security.ClientTLSConfig(client, svc.Name(), security.WithoutResumption())
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", svc.Addr().String(), conf)
	if err != nil {
		t.Fatalf("fresh handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// Under continuous load from 16 callers, 20 leaf rotations and one root
// rotation with overlap fail no call, and new handshakes present the new
// leaf.
func TestRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	oldCA, _ := security.NewCA("moat.test")
	if err := oldCA.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"auth", "caller"} {
		if _, err := oldCA.IssueFiles(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	reg := registry.NewMemory()
	// Connections are recycled every 150ms so that rotation meets fresh
	// handshakes all along, not only long-lived connections.
	auth := fileService(t, dir, "auth", reg, rpc.WithServerOptions(grpc.KeepaliveParams(
		keepalive.ServerParameters{MaxConnectionAge: 150 * time.Millisecond, MaxConnectionAgeGrace: time.Second})))
	caller := fileService(t, dir, "caller", reg)
	conn, err := caller.Client().Conn("auth")
	if err != nil {
		t.Fatal(err)
	}
	client := authv1.NewAuthServiceClient(conn)

	var calls, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.Validate(ctx, &authv1.ValidateRequest{}, grpc.WaitForReady(true))
				cancel()
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}

	probe := mustIdentity(t, oldCA, "probe")
	for i := range 20 {
		if _, err := oldCA.IssueFiles(dir, "auth"); err != nil {
			t.Fatal(err)
		}
		waitServing(t, auth, dir)
		if got, want := presentedSerial(t, auth, probe), auth.Identity().Leaf().SerialNumber; got.Cmp(want) != 0 {
			t.Fatalf("rotation %d: new handshake presented serial %x, want the new leaf %x", i, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Root rotation: trust both roots, move every leaf to the new root,
	// then drop the old root.
	newCA, _ := security.NewCA("moat.test")
	writeBundle(t, dir, oldCA, newCA)
	waitServing(t, auth, dir)
	waitServing(t, caller, dir)
	time.Sleep(200 * time.Millisecond)
	for _, svc := range []*rpc.Service{auth, caller} {
		if _, err := newCA.IssueFiles(dir, svc.Name()); err != nil {
			t.Fatal(err)
		}
	}
	waitServing(t, auth, dir)
	waitServing(t, caller, dir)
	time.Sleep(200 * time.Millisecond)
	writeBundle(t, dir, newCA)
	waitServing(t, auth, dir)
	waitServing(t, caller, dir)
	time.Sleep(300 * time.Millisecond)
	if got := presentedSerial(t, auth, mustIdentity(t, newCA, "probe")); got.Cmp(auth.Identity().Leaf().SerialNumber) != 0 {
		t.Fatal("after root rotation a fresh handshake does not present the new leaf")
	}

	close(stop)
	wg.Wait()
	t.Logf("%d calls during 20 leaf rotations and a root rotation, %d failed", calls.Load(), failures.Load())
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed during rotation; first: %v", failures.Load(), calls.Load(), firstErr.Load())
	}
	if calls.Load() < 100 {
		t.Fatalf("only %d calls made: the load did not run", calls.Load())
	}
}

// Revoking a caller's certificate refuses its new handshakes and closes
// its open connection within the sweep interval; other callers go on.
func TestRevocationClosesLiveConnections(t *testing.T) {
	dir := t.TempDir()
	ca, _ := security.NewCA("moat.test")
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Revoke(dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	reg := registry.NewMemory()
	authID := mustIdentity(t, ca, "auth")
	ev := &auditLog{}
	crl := security.NewCRLFile(filepath.Join(dir, security.CRLFileName), authID)
	startService(t, ca, reg, "auth", rpc.WithIdentity(authID), rpc.WithRevocation(crl),
		rpc.WithRevocationSweep(100*time.Millisecond), rpc.WithAuditHook(ev.hook))

	bad, good := mustIdentity(t, ca, "caller"), mustIdentity(t, ca, "worker")
	badConn, _ := rpc.Dial(reg, bad, "auth", rpc.WithDialKeyring(testKeyring(t)))
	defer badConn.Close()
	goodConn, _ := rpc.Dial(reg, good, "auth", rpc.WithDialKeyring(testKeyring(t)))
	defer goodConn.Close()
	call := func(cc grpc.ClientConnInterface) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := authv1.NewAuthServiceClient(cc).Validate(ctx, &authv1.ValidateRequest{})
		return err
	}
	for _, cc := range []grpc.ClientConnInterface{badConn, goodConn} {
		if err := call(cc); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := ca.Revoke(dir, time.Hour, bad.Leaf().SerialNumber); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for !ev.has(security.EventRevoked, "spiffe://moat.test/svc/caller") {
		if time.Since(start) > 3*time.Second {
			t.Fatal("the revoked caller's live connection was not closed within 3s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("revoked caller's connection closed %v after the list was published", time.Since(start).Round(10*time.Millisecond))
	if err := call(badConn); err == nil {
		t.Fatal("revoked caller's call succeeded")
	}
	// The server reports the refusal as its side of the handshake ends,
	// which may be just after the client gave up.
	for deadline := time.Now().Add(3 * time.Second); !ev.hasReason(security.EventHandshakeRefused,
		security.ReasonRevoked); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no handshake refusal with reason revoked")
		}
	}
	if ev.has(security.EventRevoked, "spiffe://moat.test/svc/worker") {
		t.Fatal("the other caller's connection was closed")
	}
	if err := call(goodConn); err != nil {
		t.Fatalf("other caller affected: %v", err)
	}
}

// A revocation list past its next update fails closed.
func TestStaleRevocationListFailsClosed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := security.NewCA("moat.test")
	if _, err := ca.Revoke(dir, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	reg := registry.NewMemory()
	authID := mustIdentity(t, ca, "auth")
	ev := &auditLog{}
	startService(t, ca, reg, "auth", rpc.WithIdentity(authID),
		rpc.WithRevocation(security.NewCRLFile(filepath.Join(dir, security.CRLFileName), authID)),
		rpc.WithAuditHook(ev.hook))
	conn, _ := rpc.Dial(reg, mustIdentity(t, ca, "caller"), "auth", rpc.WithDialKeyring(testKeyring(t)))
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := authv1.NewAuthServiceClient(conn).Validate(ctx, &authv1.ValidateRequest{}); err == nil {
		t.Fatal("call accepted with a stale revocation list")
	}
	for deadline := time.Now().Add(3 * time.Second); !ev.hasReason(security.EventHandshakeRefused,
		security.ReasonRevocationUnavailable); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no refusal with reason revocation_unavailable")
		}
	}
}

type auditLog struct {
	mu  sync.Mutex
	all []security.Event
}

func (a *auditLog) hook(ev security.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, ev)
}

func (a *auditLog) has(kind security.EventKind, peer string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range a.all {
		if ev.Kind == kind && ev.Peer == peer {
			return true
		}
	}
	return false
}

func (a *auditLog) hasReason(kind security.EventKind, reason security.Reason) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range a.all {
		if ev.Kind == kind && ev.Reason == reason {
			return true
		}
	}
	return false
}

func TestPolicyRefusesWithPermissionDenied(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	ev := &auditLog{}
	policy := &security.Policy{Methods: map[string]security.Rule{
		"/moat.example.auth.v1.AuthService/Validate": {Allow: []string{"profile"}},
	}}
	startService(t, ca, reg, "auth", rpc.WithPolicy(policy), rpc.WithAuditHook(ev.hook))
	call := func(as, method string) error {
		conn, err := rpc.Dial(reg, mustIdentity(t, ca, as), "auth", rpc.WithDialKeyring(testKeyring(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return conn.Invoke(ctx, method, &authv1.ValidateRequest{}, &authv1.ValidateResponse{})
	}
	if err := call("profile", "/moat.example.auth.v1.AuthService/Validate"); err != nil {
		t.Fatalf("allowed caller refused: %v", err)
	}
	for _, method := range []string{
		"/moat.example.auth.v1.AuthService/Validate",
		"/auth.AuthService/Validate", // the go-micro path form must not bypass the policy
	} {
		err := call("caller", method)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s: err = %v, want PermissionDenied", method, err)
		}
		if strings.Contains(status.Convert(err).Message(), "profile") {
			t.Fatalf("refusal leaks the policy: %q", status.Convert(err).Message())
		}
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	found := false
	for _, e := range ev.all {
		found = found || (e.Kind == security.EventAuthzDenied && e.Peer == "spiffe://moat.test/svc/caller" &&
			e.Method == "/moat.example.auth.v1.AuthService/Validate")
	}
	if !found {
		t.Fatalf("no audit event with caller and canonical method: %+v", ev.all)
	}
}

// Metrics are served over mutual TLS only, and show handshake refusals by
// reason.
func TestMetricsOverMutualTLS(t *testing.T) {
	t.Parallel()
	ca, _ := security.NewCA("moat.test")
	reg := registry.NewMemory()
	svc := startService(t, ca, reg, "auth", rpc.WithMetricsAddress("127.0.0.1:0"))
	// The refusals of the handshake tests, one of each kind.
	clients := badClients(t, ca)
	for _, c := range clients {
		if err := callWith(t, svc, c.creds); err == nil {
			t.Fatalf("%s: call succeeded", c.name)
		}
	}
	// One good call.
	good, _ := rpc.Dial(reg, mustIdentity(t, ca, "caller"), "auth", rpc.WithDialKeyring(testKeyring(t)))
	if _, err := authv1.NewAuthServiceClient(good).Validate(ctxT(t), &authv1.ValidateRequest{}); err != nil {
		t.Fatal(err)
	}
	good.Close()

	url := "https://" + svc.MetricsAddr().String() + "/metrics"
	scraper := mustIdentity(t, ca, "prometheus")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: scraper.Bundle(), Certificates: []tls.Certificate{*scraper.TLSCertificate()},
		ServerName: "localhost", MinVersion: tls.VersionTLS13,
	}}}
	defer client.CloseIdleConnections()
	scrape := func() string {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	want := []string{
		`moat_server_handled_total{code="OK",method="/moat.example.auth.v1.AuthService/Validate",peer="caller",service="auth"} 1`,
		`moat_certificate_expiry_seconds{service="auth"}`,
	}
	for _, c := range clients {
		want = append(want, `moat_handshakes_total{reason="`+string(c.want)+`",result="refused",service="auth",side="server"} 1`)
	}
	// The server counts a refusal as its side of the handshake ends, which
	// may be just after the client gave up.
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range want {
		for body := scrape(); !strings.Contains(body, w); body = scrape() {
			if time.Now().After(deadline) {
				t.Fatalf("metrics lack %s:\n%s", w, grepMoat(body))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	anonymous := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: scraper.Bundle(), ServerName: "localhost",
	}}}
	defer anonymous.CloseIdleConnections()
	if resp, err := anonymous.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("metrics served to a client without certificate")
	}
}

func grepMoat(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "moat_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
