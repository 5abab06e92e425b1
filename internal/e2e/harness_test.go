package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/moatrpc/moat/internal/devenv"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "moat-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		for name, pkg := range map[string]string{
			"auth":    "github.com/moatrpc/moat/services/auth/cmd/auth",
			"profile": "github.com/moatrpc/moat/services/profile/cmd/profile",
			"audit":   "github.com/moatrpc/moat/services/audit/cmd/audit",
		} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// env is a dev environment with Consul, for one test.
type env struct {
	*devenv.Env
	t *testing.T
}

func startEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e, err := devenv.Start(ctx, devenv.EnvConfig{
		Dir: t.TempDir(), TrustDomain: "moat.test", Services: []string{"auth", "profile", "audit", "caller"},
	})
	if err != nil {
		t.Fatalf("start dev environment: %v", err)
	}
	t.Cleanup(func() { e.Stop() })
	return &env{Env: e, t: t}
}

func (e *env) identity(service string) *security.Identity {
	e.t.Helper()
	f := security.FilesFor(e.CertsDir, service)
	id, err := security.LoadIdentity(f.Cert, f.Key, f.Bundle)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) registry(service, consulAddr string) *registry.Consul {
	e.t.Helper()
	reg, err := registry.NewConsul(registry.WithConsulAddress(consulAddr),
		registry.WithConsulIdentity(e.identity(service)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { reg.Close() })
	return reg
}

// keyring returns a dial option sealing with the environment's keysets.
func (e *env) keyring() grpc.DialOption {
	e.t.Helper()
	files, err := fields.KeysetFiles(e.KeysDir)
	if err != nil {
		e.t.Fatal(err)
	}
	ring, err := fields.LoadKeyring(files)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ring.Close() })
	return rpc.WithDialKeyring(ring)
}

// proc is a service running as its own process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  bytes.Buffer
}

// startProc runs a service binary with the environment's variables and
// extra ones.
func (e *env) startProc(name string, extra ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = append(append(os.Environ(), e.Environ()...), extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		p.kill()
		if e.t.Failed() {
			e.t.Logf("%s log:\n%s", name, p.logs())
		}
	})
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %d:\n%s", p.name, code, p.logs())
	}
}

// relay forwards connections to a target and records every byte that
// crosses it, in both directions: what an eavesdropper on the wire sees, or,
// with TLS on both sides, what a proxy that terminates TLS sees.
type relay struct {
	ln    net.Listener
	dial  func() (net.Conn, error)
	mu    sync.Mutex
	seen  bytes.Buffer
	conns int
	wg    sync.WaitGroup
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startRelay(t, ln, func() (net.Conn, error) { return net.Dial("tcp", target) })
}

func startRelay(t *testing.T, ln net.Listener, dial func() (net.Conn, error)) *relay {
	r := &relay{ln: ln, dial: dial}
	go r.serve()
	t.Cleanup(func() {
		ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := r.dial()
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(up, c)
		go r.pipe(c, up)
	}
}

func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.seen.Write(buf[:n])
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			return
		}
	}
}

func (r *relay) capture() (data []byte, conns int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.seen.Bytes()), r.conns
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// containsAny returns the needles found in haystack, in any of the
// encodings a careless protocol would use.
func containsAny(haystack []byte, needles []string) []string {
	var found []string
	for _, n := range needles {
		if n == "" {
			continue
		}
		if bytes.Contains(haystack, []byte(n)) || bytes.Contains(bytes.ToLower(haystack), []byte(strings.ToLower(n))) {
			found = append(found, n)
		}
	}
	return found
}

// registryWith returns an in-memory registry where service is at addr.
func registryWith(t *testing.T, service, addr string) registry.Registry {
	t.Helper()
	reg := registry.NewMemory()
	err := reg.Register(context.Background(), &registry.Service{Name: service,
		Nodes: []*registry.Node{{ID: service + "-proxy", Address: addr}}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}
