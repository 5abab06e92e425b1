package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/moatrpc/moat/security"
)

// EmbeddedOption configures an [Embedded] server.
type EmbeddedOption interface{ applyEmbedded(*embeddedConfig) }

type embeddedConfig struct {
	storeDir   string
	port       int
	logger     *slog.Logger
	tlsTimeout time.Duration
	err        error
}

type embeddedFunc func(*embeddedConfig)

func (f embeddedFunc) applyEmbedded(c *embeddedConfig) { f(c) }

// WithStoreDir sets the directory where JetStream keeps streams; it
// survives [Embedded.Restart] and Shutdown. The default is a new
// temporary directory, removed by Shutdown.
func WithStoreDir(dir string) EmbeddedOption {
	return embeddedFunc(func(c *embeddedConfig) {
		if dir == "" {
			c.err = fmt.Errorf("%w: empty store directory", ErrInvalidOption)
			return
		}
		c.storeDir = dir
	})
}

// WithPort sets the loopback port to listen on; the default 0 picks a
// free one.
func WithPort(port int) EmbeddedOption {
	return embeddedFunc(func(c *embeddedConfig) {
		if port < 0 || port > 65535 {
			c.err = fmt.Errorf("%w: port %d", ErrInvalidOption, port)
			return
		}
		c.port = port
	})
}

// WithTLSTimeout sets how long a client has to complete its TLS handshake;
// the default is five seconds.
func WithTLSTimeout(d time.Duration) EmbeddedOption {
	return embeddedFunc(func(c *embeddedConfig) {
		if d <= 0 {
			c.err = fmt.Errorf("%w: TLS timeout %v", ErrInvalidOption, d)
			return
		}
		c.tlsTimeout = d
	})
}

// Embedded is a NATS server running in this process, for development and
// tests: it listens on 127.0.0.1 only, speaks TLS 1.3 only, presents the
// workload certificate it was given (by convention the "nats" service's),
// requires every client to present a certificate of the same trust domain
// that chains to the trust bundle, and refuses plaintext clients. JetStream
// is on. Its methods are safe for concurrent use.
type Embedded struct {
	src security.Source
	cfg embeddedConfig
	own bool // the store directory was created here

	mu   sync.Mutex
	srv  *server.Server
	port int
}

// StartEmbedded starts an embedded NATS server presenting src, and waits
// until it accepts connections or ctx ends. Clients reach it at
// [Embedded.ClientURL] with a broker built by [NewNATS].
func StartEmbedded(
	ctx context.Context,
	src security.Source,
	opts ...EmbeddedOption,
) (*Embedded, error) {
	if src == nil || src.Current() == nil {
		return nil, fmt.Errorf("%w for the NATS server: pass one loaded with "+
			"security.LoadIdentity; create dev certificates with 'moat certs init' and "+
			"'moat certs issue %s'", ErrNoIdentity, DefaultServerIdentity)
	}
	cfg := embeddedConfig{logger: discardLogger(), tlsTimeout: 5 * time.Second}
	for _, o := range opts {
		if o != nil {
			o.applyEmbedded(&cfg)
		}
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	e := &Embedded{src: src, cfg: cfg, port: cfg.port}
	if e.cfg.storeDir == "" {
		dir, err := os.MkdirTemp("", "moat-nats-*")
		if err != nil {
			return nil, fmt.Errorf("broker: embedded server store: %w", err)
		}
		e.cfg.storeDir, e.own = dir, true
	}
	if err := e.start(ctx); err != nil {
		if e.own {
			os.RemoveAll(e.cfg.storeDir)
		}
		return nil, err
	}
	return e, nil
}

func (e *Embedded) start(ctx context.Context) error {
	tlsConf, err := security.ServerTLSConfig(e.src)
	if err != nil {
		return err
	}
	// NATS is not HTTP/2; keep moat's TLS checks but no ALPN.
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = nil

	port := e.port
	if port == 0 {
		port = -1 // nats-server's "pick a free port"
	}
	opts := &server.Options{
		ServerName:  "moat-embedded",
		Host:        "127.0.0.1",
		Port:        port,
		NoSigs:      true,
		NoLog:       true,
		TLS:         true,
		TLSVerify:   true,
		TLSConfig:   tlsConf,
		TLSTimeout:  e.cfg.tlsTimeout.Seconds(),
		AllowNonTLS: false,
		// Per-service permissions derived from each client's certificate.
		CustomClientAuthentication: queueAuth{},
		JetStream:                  true,
		StoreDir:                   e.cfg.storeDir,
		// The HTTP monitoring endpoints stay off: they would be plaintext.
		HTTPPort:  0,
		HTTPSPort: 0,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("broker: embedded server: %w", err)
	}
	srv.SetLoggerV2(&serverLogger{l: e.cfg.logger}, false, false, false)
	srv.Start()

	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("broker: embedded server not ready within %v", wait)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return errors.New("broker: embedded server has no TCP address")
	}
	e.srv, e.port = srv, addr.Port
	return nil
}

// ClientURL returns the URL clients connect to: tls://127.0.0.1:<port>.
func (e *Embedded) ClientURL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprintf("tls://127.0.0.1:%d", e.port)
}

// Port returns the loopback port the server listens on.
func (e *Embedded) Port() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.port
}

// StoreDir returns the JetStream store directory.
func (e *Embedded) StoreDir() string { return e.cfg.storeDir }

// Restart stops the server and starts it again on the same port with the
// same store, as a crash and recovery would; clients reconnect by
// themselves. It also starts a server that was shut down, if its store
// still exists.
func (e *Embedded) Restart(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stop()
	return e.start(ctx)
}

// Shutdown stops the server, closing every client connection, and removes
// the store directory when StartEmbedded created it.
func (e *Embedded) Shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stop()
	if e.own {
		os.RemoveAll(e.cfg.storeDir)
	}
}

func (e *Embedded) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.srv = nil
}

// serverLogger sends nats-server's log to slog; the server's Fatalf does
// not exit the process here.
type serverLogger struct{ l *slog.Logger }

func (s *serverLogger) log(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	s.l.Log(ctx, level, "broker: nats-server: "+fmt.Sprintf(format, v...))
}

func (s *serverLogger) Noticef(format string, v ...any) { s.log(slog.LevelInfo, format, v) }
func (s *serverLogger) Warnf(format string, v ...any)   { s.log(slog.LevelWarn, format, v) }
func (s *serverLogger) Fatalf(format string, v ...any)  { s.log(slog.LevelError, format, v) }
func (s *serverLogger) Errorf(format string, v ...any)  { s.log(slog.LevelError, format, v) }
func (s *serverLogger) Debugf(format string, v ...any)  { s.log(slog.LevelDebug, format, v) }
func (s *serverLogger) Tracef(format string, v ...any)  { s.log(slog.LevelDebug-4, format, v) }
