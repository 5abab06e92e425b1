package broker

import (
	"errors"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartEmbeddedRefuses(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	tests := []struct {
		name    string
		src     bool
		opts    []EmbeddedOption
		want    error
		mention string
	}{
		{"no identity", false, nil, ErrNoIdentity, "moat certs issue nats"},
		{"empty store dir", true, []EmbeddedOption{WithStoreDir("")}, ErrInvalidOption, "store"},
		{"bad port", true, []EmbeddedOption{WithPort(70000)}, ErrInvalidOption, "port"},
		{"bad TLS timeout", true, []EmbeddedOption{WithTLSTimeout(0)}, ErrInvalidOption,
			"TLS timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t, 10*time.Second)
			var (
				srv *Embedded
				err error
			)
			if tt.src {
				srv, err = StartEmbedded(ctx, identity(t, ca, "nats"), tt.opts...)
			} else {
				srv, err = StartEmbedded(ctx, nil, tt.opts...)
			}
			if err == nil {
				srv.Shutdown()
				t.Fatal("started")
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q, want %v mentioning %q", err, tt.want, tt.mention)
			}
		})
	}
}

func TestEmbeddedAddressAndRestart(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	url := env.srv.ClientURL()
	if !regexp.MustCompile(`^tls://127\.0\.0\.1:\d+$`).MatchString(url) {
		t.Fatalf("ClientURL() = %q", url)
	}
	if !strings.HasSuffix(url, ":"+strconv.Itoa(env.srv.Port())) {
		t.Errorf("port %d not in %q", env.srv.Port(), url)
	}
	if env.srv.StoreDir() == "" {
		t.Error("no store directory")
	}
	if err := env.srv.Restart(testContext(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if env.srv.ClientURL() != url {
		t.Errorf("restart moved the server from %s to %s", url, env.srv.ClientURL())
	}
	env.srv.Shutdown()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "tls://"), time.Second)
	if err == nil {
		conn.Close()
		t.Error("server still listening after Shutdown")
	}
}

func TestEmbeddedOwnsTemporaryStore(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	srv, err := StartEmbedded(testContext(t, 20*time.Second), identity(t, ca, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	dir := srv.StoreDir()
	srv.Shutdown()
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("temporary store %s left behind", dir)
	}
}
