package tutorial

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatrpc/moat/internal/devenv"
)

// step is one marked code block of the tutorial.
type step struct {
	kind string // file, run, background or output
	arg  string // the path of a file, the text a background step waits for
	body string
	line int
}

var marker = regexp.MustCompile(`^<!-- tutorial: (file|run|background|output)\s*(.*?)\s*-->$`)

// parseSteps reads the marked blocks of a Markdown page, in order.
func parseSteps(page string) ([]step, error) {
	var steps []step
	sc := bufio.NewScanner(strings.NewReader(page))
	var pending *step
	var body []string
	inBlock, n := false, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case inBlock && strings.HasPrefix(line, "```"):
			inBlock = false
			if pending != nil {
				pending.body = strings.Join(body, "\n") + "\n"
				steps = append(steps, *pending)
				pending = nil
			}
		case inBlock:
			body = append(body, line)
		case strings.HasPrefix(line, "```"):
			inBlock, body = true, nil
		default:
			m := marker.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				continue
			}
			if pending != nil {
				return nil, fmt.Errorf("line %d: marker without a code block after it", pending.line)
			}
			pending = &step{kind: m[1], line: n}
			switch m[1] {
			case "file":
				pending.arg = m[2]
			case "background":
				until, ok := strings.CutPrefix(m[2], "until ")
				if !ok {
					return nil, fmt.Errorf("line %d: background needs until \"text\"", n)
				}
				pending.arg = strings.Trim(until, `"`)
			}
		}
	}
	if pending != nil {
		return nil, fmt.Errorf("line %d: marker without a code block after it", pending.line)
	}
	return steps, sc.Err()
}

func TestParseSteps(t *testing.T) {
	t.Parallel()
	page := "text\n<!-- tutorial: file a/b.go -->\n```go\npackage b\n```\n" +
		"<!-- tutorial: run -->\n```sh\nmake x\necho y\n```\n" +
		"```sh\nnot marked\n```\n" +
		"<!-- tutorial: background until \"ready now\" -->\n```sh\nserve\n```\n" +
		"<!-- tutorial: output -->\n```\ny\n```\n"
	tests := []struct {
		name    string
		page    string
		want    []step
		wantErr bool
	}{
		{name: "every kind", page: page, want: []step{
			{kind: "file", arg: "a/b.go", body: "package b\n", line: 2},
			{kind: "run", body: "make x\necho y\n", line: 6},
			{kind: "background", arg: "ready now", body: "serve\n", line: 14},
			{kind: "output", body: "y\n", line: 18},
		}},
		{name: "marker at the end", page: "<!-- tutorial: run -->\n", wantErr: true},
		{name: "background without until", page: "<!-- tutorial: background -->\n```\nx\n```\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseSteps(tt.page)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("steps\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// copyRepo copies the checkout at root into dst, without its history,
// binaries and dev environment.
func copyRepo(root, dst string) error {
	skip := map[string]bool{".git": true, "bin": true, ".dev": true, "dist": true}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if skip[rel] {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		// Stray build outputs are not part of a checkout.
		if info.Size() > 8<<20 {
			return nil
		}
		return copyFile(path, filepath.Join(dst, rel), info.Mode().Perm())
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cleanEnv is the test's environment without moat's variables, so that
// the tutorial's commands see only what it sets up.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOAT_") {
			env = append(env, kv)
		}
	}
	return env
}

func TestFirstServiceTutorial(t *testing.T) {
	if testing.Short() {
		t.Skip("builds code and starts Consul")
	}
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(root, "docs", "first-service.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseSteps(string(page))
	if err != nil {
		t.Fatal(err)
	}
	consul, err := devenv.FindConsul()
	if err != nil {
		t.Skip(err)
	}
	consul, err = filepath.Abs(consul)
	if err != nil {
		t.Fatal(err)
	}
	// make generate would build buf and its plugins from source when
	// missing; the test reuses the checkout's.
	tools := []string{"buf", "protoc-gen-go", "protoc-gen-go-grpc"}
	for _, tool := range tools {
		if _, err := os.Stat(filepath.Join(root, "bin", tool)); err != nil {
			t.Skipf("needs bin/%s: run 'make generate' once", tool)
		}
	}

	dir := t.TempDir()
	if err := copyRepo(root, dir); err != nil {
		t.Fatal(err)
	}
	// Copied after tools/ so that make sees the binaries as up to date.
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools {
		if err := copyFile(filepath.Join(root, "bin", tool), filepath.Join(dir, "bin", tool), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(consul, filepath.Join(dir, "bin", "consul")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := cleanEnv()
	var lastOut string
	start := time.Now()
	for _, s := range steps {
		t.Logf("%6.1fs docs/first-service.md:%d: %s %s", time.Since(start).Seconds(), s.line, s.kind, s.arg)
		switch s.kind {
		case "file":
			path := filepath.Join(dir, filepath.FromSlash(s.arg))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(s.body), 0o644); err != nil {
				t.Fatal(err)
			}
		case "run":
			stepCtx, stepCancel := context.WithTimeout(ctx, 5*time.Minute)
			cmd := exec.CommandContext(stepCtx, "bash", "-euo", "pipefail", "-c", s.body)
			cmd.Dir, cmd.Env = dir, env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			stepCancel()
			if err != nil {
				t.Fatalf("line %d: %s\nfailed: %v\nstdout:\n%s\nstderr:\n%s", s.line, s.body, err,
					stdout.String(), stderr.String())
			}
			lastOut = stdout.String()
		case "output":
			for _, want := range strings.Split(strings.TrimSpace(s.body), "\n") {
				if !strings.Contains(lastOut, strings.TrimSpace(want)) {
					t.Fatalf("line %d: the command's output lacks %q:\n%s", s.line, want, lastOut)
				}
			}
		case "background":
			startBackground(t, dir, env, s)
		}
	}
}

// startBackground runs a step in its own process group until its output
// shows the text it waits for, and stops the group when the test ends.
func startBackground(t *testing.T, dir string, env []string, s step) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", s.body)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("output of line %d (%s):\n%s", s.line, strings.TrimSpace(s.body), out.String())
		}
	})
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), s.arg) {
		select {
		case err := <-done:
			done <- err
			if err == nil {
				err = errors.New("exited")
			}
			t.Fatalf("line %d: %s ended before printing %q: %v\n%s", s.line, s.body, s.arg, err, out.String())
		case <-deadline:
			t.Fatalf("line %d: %s did not print %q within 2m:\n%s", s.line, s.body, s.arg, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
