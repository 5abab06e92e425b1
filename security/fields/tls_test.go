package fields_test

import (
	"net"
	"testing"

	"google.golang.org/grpc"

	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

// TestOverMutualTLS runs sealing and logging over moat's own mutual TLS,
// so that both sides log the identity the other presented.
func TestOverMutualTLS(t *testing.T) {
	t.Parallel()
	ca, err := security.NewCA("moat.test")
	if err != nil {
		t.Fatal(err)
	}
	srvID, err := ca.Identity("echo")
	if err != nil {
		t.Fatal(err)
	}
	cliID, err := ca.Identity("caller")
	if err != nil {
		t.Fatal(err)
	}
	srvCreds, err := security.ServerCredentials(srvID, nil)
	if err != nil {
		t.Fatal(err)
	}
	cliCreds, err := security.ClientCredentials(cliID, "echo", nil)
	if err != nil {
		t.Fatal(err)
	}

	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"), fields.WithRequireSealed())
	srvLog, srvBuf := newLogBuffer()
	cliLog, cliBuf := newLogBuffer()
	sl, cl := fields.NewCallLogger(srvLog), fields.NewCallLogger(cliLog)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(srvCreds),
		grpc.ChainUnaryInterceptor(sl.UnaryServerInterceptor(), s.UnaryServerInterceptor()))
	srv.RegisterService(&echoDesc, &echoServer{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(cliCreds),
		grpc.WithChainUnaryInterceptor(cl.UnaryClientInterceptor(), s.UnaryClientInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cc.Close()
		srv.Stop()
		<-done
	}()

	in := &testpb.Envelope{Token: "over-tls"}
	out, err := echo(testContext(t), cc, in)
	if err != nil || out.GetToken() != "over-tls" {
		t.Fatalf("echo: %v %v", out, err)
	}
	tests := []struct {
		name string
		buf  *logBuffer
		want string
	}{
		{name: "server logs the caller", buf: srvBuf, want: cliID.ID().String()},
		{name: "client logs the server", buf: cliBuf, want: srvID.ID().String()},
	}
	for _, tt := range tests {
		var found bool
		for _, rec := range tt.buf.lines(t) {
			if rec["msg"] == "finished call" && rec[fields.PeerKey] == tt.want {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no finished-call line with %s = %s:\n%s", tt.name, fields.PeerKey, tt.want, tt.buf)
		}
	}
}
