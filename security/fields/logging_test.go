package fields_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

// logBuffer is a goroutine-safe buffer for a JSON slog handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the records written so far.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, rec)
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogBuffer() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func TestCallLoggerRedacts(t *testing.T) {
	t.Parallel()
	s := newSealer(t, newRing(t, fields.DefaultKeyset, "billing"))
	srvLog, srvBuf := newLogBuffer()
	cliLog, cliBuf := newLogBuffer()
	sl := fields.NewCallLogger(srvLog, fields.WithPayloads())
	cl := fields.NewCallLogger(cliLog, fields.WithPayloads())
	sc := serverConfig{
		unary:  []grpc.UnaryServerInterceptor{sl.UnaryServerInterceptor(), s.UnaryServerInterceptor()},
		stream: []grpc.StreamServerInterceptor{sl.StreamServerInterceptor(), s.StreamServerInterceptor()},
	}
	_, cc := startEcho(t, sc,
		grpc.WithChainUnaryInterceptor(cl.UnaryClientInterceptor(), s.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(cl.StreamClientInterceptor(), s.StreamClientInterceptor()))

	secrets := []string{"tok-SECRET-1", "inner-SECRET-2", "pii-EMAIL-3", "debug-NOTE-4",
		"Bearer AUTH-5", "sess-6"}
	in := &testpb.Envelope{
		Id: "visible-id", Token: secrets[0], Inner: &testpb.Inner{Secret: secrets[1], Label: "lbl"},
		Email: secrets[2], Note: secrets[3],
	}
	ctx := metadata.AppendToOutgoingContext(testContext(t),
		"authorization", secrets[4], "x-session-token", secrets[5], "x-request-id", "req-7")
	if _, err := echo(ctx, cc, in); err != nil {
		t.Fatal(err)
	}
	st, err := chat(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(proto.Clone(in)); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(&testpb.Envelope{}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	_ = st.RecvMsg(&testpb.Envelope{})

	for _, side := range []struct {
		name string
		buf  *logBuffer
	}{{"server", srvBuf}, {"client", cliBuf}} {
		all := side.buf.String()
		for _, v := range secrets {
			if strings.Contains(all, v) {
				t.Fatalf("%s log holds %q:\n%s", side.name, v, all)
			}
		}
		if strings.Contains(all, "moat:v1:") {
			t.Fatalf("%s log holds a ciphertext", side.name)
		}
		for _, want := range []string{"visible-id", fields.Redacted, "req-7", `"grpc.method":"Echo"`,
			`"grpc.code":"OK"`, "grpc.time_ms", `"grpc.method":"Chat"`} {
			if !strings.Contains(all, want) {
				t.Fatalf("%s log lacks %q:\n%s", side.name, want, all)
			}
		}
	}
	var finished int
	for _, rec := range srvBuf.lines(t) {
		if rec["msg"] != "finished call" {
			continue
		}
		finished++
		if rec[fields.PeerKey] != testPeer.String() {
			t.Fatalf("server line without the peer identity: %v", rec)
		}
	}
	if finished != 2 {
		t.Fatalf("%d finished-call lines on the server, want 2", finished)
	}
}

func TestCallLoggerDefaults(t *testing.T) {
	t.Parallel()
	logger, buf := newLogBuffer()
	cl := fields.NewCallLogger(logger, fields.WithoutMetadata())
	_, cc := startEcho(t, serverConfig{unary: []grpc.UnaryServerInterceptor{cl.UnaryServerInterceptor()}})
	ctx := metadata.AppendToOutgoingContext(testContext(t), "x-request-id", "req-1")
	if _, err := ping(ctx, cc, &testpb.Plain{Id: "payload-id"}); err != nil {
		t.Fatal(err)
	}
	all := buf.String()
	if strings.Contains(all, "payload-id") || strings.Contains(all, "req-1") {
		t.Fatalf("payload or metadata logged without being asked:\n%s", all)
	}
	if !strings.Contains(all, `"grpc.method":"Ping"`) {
		t.Fatalf("call not logged:\n%s", all)
	}
	// A nil logger discards.
	fields.NewCallLogger(nil).UnaryServerInterceptor()
}

func TestRedactingLogger(t *testing.T) {
	t.Parallel()
	logger, buf := newLogBuffer()
	l := fields.RedactingLogger(logger)
	l.Log(testContext(t), 0, "payload", "content",
		&profilev1.Profile{UserId: "u-1", Name: "Ada Lovelace"}, "odd")
	all := buf.String()
	if strings.Contains(all, "Ada Lovelace") || !strings.Contains(all, "u-1") {
		t.Fatalf("log line: %s", all)
	}
}
