// Package devenv starts the real components of a moat development
// environment: a Consul agent in dev mode with HTTPS and client certificate
// verification, bound to loopback. The dev environment ('moat dev'), the
// demo and the integration tests all start Consul through it.
package devenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moatrpc/moat/security"
)

// ConsulConfig says how to start a dev agent.
type ConsulConfig struct {
	// Binary is the consul executable; empty selects [FindConsul].
	Binary string
	// Dir receives the agent's configuration and log.
	Dir string
	// CA issues the agent's certificate and the client certificate used
	// to check it is ready.
	CA *security.CA
	// HTTPSPort is the port of the HTTPS API; 0 picks a free one. Restart
	// keeps the ports.
	HTTPSPort int
	// ACLMasterToken, when set, turns ACLs on with default deny and this
	// initial management token.
	ACLMasterToken string
	// Output receives the agent's own log; nil writes it to Dir/consul.log.
	Output io.Writer
}

// Consul is a running dev agent.
type Consul struct {
	cfg      ConsulConfig
	bin      string
	addr     string
	server   string
	confFile string
	client   *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

// FindConsul returns the consul binary to run: $MOAT_CONSUL_BIN, else
// consul next to the running executable (bin/ holds both moat and consul),
// else bin/consul in the enclosing moat checkout, else consul on $PATH.
func FindConsul() (string, error) {
	if p := os.Getenv("MOAT_CONSUL_BIN"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "consul")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", "consul")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	return "", errors.New("devenv: no consul binary: run 'make consul' (builds Consul 1.16.1 " +
		"into bin/consul) or set MOAT_CONSUL_BIN")
}

// RepoRoot returns the root of the moat checkout holding the working
// directory, found by walking up to a go.mod of module
// github.com/moatrpc/moat.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/moatrpc/moat\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("devenv: not inside a moat checkout")
		}
		dir = parent
	}
}

// StartConsul writes the agent's certificate and configuration into
// cfg.Dir, starts the agent and waits until it has a leader.
func StartConsul(ctx context.Context, cfg ConsulConfig) (*Consul, error) {
	if cfg.CA == nil {
		return nil, errors.New("devenv: ConsulConfig.CA is required")
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = FindConsul(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	// A dev environment started again in the same folder keeps its HTTPS
	// port when it is free, so that services still running find it.
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = previousPort(cfg.Dir)
	}
	if cfg.HTTPSPort != 0 && portFree(cfg.HTTPSPort) {
		ports[0] = cfg.HTTPSPort
	}
	cfg.HTTPSPort = ports[0]
	_ = os.WriteFile(filepath.Join(cfg.Dir, "https-port"), []byte(strconv.Itoa(ports[0])), 0o600)

	agentFiles, err := cfg.CA.IssueFiles(cfg.Dir, "consul", security.WithLifetime(7*24*time.Hour))
	if err != nil {
		return nil, err
	}
	probeID, err := cfg.CA.Identity("consul-probe")
	if err != nil {
		return nil, err
	}
	confFile := filepath.Join(cfg.Dir, "consul.hcl")
	if err := os.WriteFile(confFile, []byte(agentConfig(cfg, ports, agentFiles)), 0o600); err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	c := &Consul{
		cfg:      cfg,
		bin:      bin,
		addr:     net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[0])),
		server:   net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[3])),
		confFile: confFile,
		client: &http.Client{
			Timeout: 2 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{
				MinVersion:   tls.VersionTLS13,
				RootCAs:      probeID.Bundle(),
				Certificates: []tls.Certificate{*probeID.TLSCertificate()},
				ServerName:   "127.0.0.1",
			}},
		},
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func agentConfig(cfg ConsulConfig, ports []int, f security.IdentityFiles) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = \"moat-dev\"\n")
	fmt.Fprintf(&b, "bind_addr = \"127.0.0.1\"\nclient_addr = \"127.0.0.1\"\n")
	fmt.Fprintf(&b, "log_level = \"warn\"\n")
	fmt.Fprintf(&b, "data_dir = %q\n", filepath.Join(cfg.Dir, "data"))
	fmt.Fprintf(&b, "ports {\n  http = -1\n  https = %d\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n"+
		"  serf_lan = %d\n  serf_wan = %d\n  server = %d\n}\n", ports[0], ports[1], ports[2], ports[3])
	fmt.Fprintf(&b, "tls {\n  defaults {\n    ca_file = %q\n    cert_file = %q\n    key_file = %q\n"+
		"    tls_min_version = \"TLSv1_3\"\n  }\n  https {\n    verify_incoming = true\n  }\n"+
		"  internal_rpc {\n    verify_incoming = true\n    verify_outgoing = true\n  }\n}\n",
		f.Bundle, f.Cert, f.Key)
	if cfg.ACLMasterToken != "" {
		fmt.Fprintf(&b, "acl {\n  enabled = true\n  default_policy = \"deny\"\n"+
			"  enable_token_persistence = false\n  tokens {\n    initial_management = %q\n  }\n}\n",
			cfg.ACLMasterToken)
	}
	return b.String()
}

func (c *Consul) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.cfg.Output
	if out == nil {
		f, err := os.OpenFile(filepath.Join(c.cfg.Dir, "consul.log"),
			os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("devenv: %w", err)
		}
		c.logf, out = f, f
	}
	cmd := exec.Command(c.bin, "agent", "-dev", "-config-file", c.confFile)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if runtime.GOOS != "linux" {
		cmd.SysProcAttr = nil
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("devenv: start consul: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.cmd, c.done = cmd, done

	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.ready() {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("devenv: consul exited during start; see %s",
				filepath.Join(c.cfg.Dir, "consul.log"))
		case <-ctx.Done():
			c.killLocked()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.killLocked()
			return errors.New("devenv: consul not ready after 60s")
		}
	}
}

// ready reports whether the agent answers over mutual TLS and has a leader.
func (c *Consul) ready() bool {
	resp, err := c.client.Get("https://" + c.addr + "/v1/status/leader")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && len(bytes.Trim(b, "\" \n")) > 0
}

// Addr returns the host:port of the agent's HTTPS API.
func (c *Consul) Addr() string { return c.addr }

// ServerAddr returns the host:port of the agent's server RPC port, which
// requires TLS with a client certificate too.
func (c *Consul) ServerAddr() string { return c.server }

// Done returns a channel closed when the agent process exits.
func (c *Consul) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return c.done
}

// Stop ends the agent with SIGTERM and waits for it. The dev agent keeps
// no state, so a later Restart starts empty.
func (c *Consul) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.killLocked()
	}
	c.cmd = nil
	if c.logf != nil {
		c.logf.Close()
		c.logf = nil
	}
	c.client.CloseIdleConnections()
	return nil
}

// Kill ends the agent with SIGKILL, as a crash would.
func (c *Consul) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killLocked()
	c.cmd = nil
}

func (c *Consul) killLocked() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Restart starts the agent again on the same ports after Stop or Kill.
func (c *Consul) Restart(ctx context.Context) error {
	if err := c.Stop(); err != nil {
		return err
	}
	return c.start(ctx)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("devenv: find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func previousPort(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "https-port"))
	if err != nil {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return p
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
