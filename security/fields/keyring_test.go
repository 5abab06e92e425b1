package fields_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/security/fields"
)

func writeKeyset(t *testing.T, path string, ks *fields.Keyset, master tink.AEAD) {
	t.Helper()
	if err := fields.WriteKeysetFile(path, ks, master); err != nil {
		t.Fatal(err)
	}
}

func TestKeysetFileRoundTrip(t *testing.T) {
	t.Parallel()
	master := newMaster(t)
	ks := newKeyset(t)
	tests := []struct {
		name   string
		write  tink.AEAD
		read   tink.AEAD
		wantOK bool
	}{
		{name: "cleartext", wantOK: true},
		{name: "encrypted", write: master, read: master, wantOK: true},
		{name: "encrypted without master", write: master},
		{name: "cleartext with master", read: master},
		{name: "wrong master", write: master, read: newMaster(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "k.json")
			writeKeyset(t, path, ks, tt.write)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("keyset file mode %v, want 0600", fi.Mode().Perm())
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fields.ParseKeyset(data, tt.read)
			if !tt.wantOK {
				if !errors.Is(err, fields.ErrBadKeyset) {
					t.Fatalf("err = %v, want bad keyset", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Primary() != ks.Primary() {
				t.Fatalf("primary %d, want %d", got.Primary(), ks.Primary())
			}
		})
	}
}

func newMaster(t *testing.T) tink.AEAD {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestParseKeysetRefusals(t *testing.T) {
	t.Parallel()
	weak, err := keyset.NewHandle(aead.AES128GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := keyset.NewHandle(aead.AES256GCMNoPrefixKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{name: "empty", data: nil},
		{name: "garbage", data: []byte("not json at all")},
		{name: "empty object", data: []byte("{}")},
		{name: "no keys", data: []byte(`{"primaryKeyId": 1, "key": []}`)},
		{name: "AES-128", data: cleartextJSON(t, weak)},
		{name: "no output prefix", data: cleartextJSON(t, raw)},
		{name: "truncated", data: cleartextJSON(t, weak)[:40]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := fields.ParseKeyset(tt.data, nil)
			if !errors.Is(err, fields.ErrBadKeyset) {
				t.Fatalf("err = %v, want bad keyset", err)
			}
		})
	}
}

func cleartextJSON(t *testing.T, h *keyset.Handle) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestKeysetStringHidesKeys(t *testing.T) {
	t.Parallel()
	ks := newKeyset(t)
	data, err := ks.MarshalCleartext()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Key []struct {
			KeyData struct {
				Value string `json:"value"`
			} `json:"keyData"`
		} `json:"key"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.Key) != 1 {
		t.Fatalf("cleartext keyset: %v", err)
	}
	if s := ks.String(); strings.Contains(s, doc.Key[0].KeyData.Value) || !strings.Contains(s, "primary") {
		t.Fatalf("String() = %q", s)
	}
}

// events collects keyring hook events.
type events chan fields.KeyringEvent

func (e events) hook(ev fields.KeyringEvent) { e <- ev }

func (e events) next(t *testing.T) fields.KeyringEvent {
	t.Helper()
	select {
	case ev := <-e:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no keyring event")
		return fields.KeyringEvent{}
	}
}

func TestKeyringReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "default.json")
	first := newKeyset(t)
	writeKeyset(t, path, first, nil)
	ev := make(events, 16)
	ring, err := fields.LoadKeyring(map[string]string{fields.DefaultKeyset: path},
		fields.WithReloadInterval(0), fields.WithKeyringHook(ev.hook))
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	s := newSealer(t, ring)
	old := &authv1.LoginRequest{Password: "old"}
	if err := s.Seal(old); err != nil {
		t.Fatal(err)
	}

	// Steps run in order against the same file.
	second, err := first.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	third, err := second.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	thirdJSON, err := third.MarshalCleartext()
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name        string
		change      func(t *testing.T)
		wantErr     bool
		wantPrimary uint32
	}{
		{
			name:        "atomic rename",
			change:      func(t *testing.T) { writeKeyset(t, path, second, nil) },
			wantPrimary: second.Primary(),
		},
		{
			name:        "garbage keeps last good",
			change:      func(t *testing.T) { writeFile(t, path, []byte(`{"key": [garbage`)) },
			wantErr:     true,
			wantPrimary: second.Primary(),
		},
		{
			name:        "in-place write",
			change:      func(t *testing.T) { writeFile(t, path, thirdJSON) },
			wantPrimary: third.Primary(),
		},
		{
			name:        "removed file keeps last good",
			change:      func(t *testing.T) { os.Remove(path) },
			wantErr:     true,
			wantPrimary: third.Primary(),
		},
	}
	for _, st := range steps {
		st.change(t)
		err := ring.Reload()
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: Reload() = %v", st.name, err)
		}
		got := ev.next(t)
		if (got.Err != nil) != st.wantErr || got.Name != fields.DefaultKeyset || got.Path != path {
			t.Fatalf("%s: event %+v", st.name, got)
		}
		if got.Err != nil && !errors.Is(got.Err, fields.ErrBadKeyset) {
			t.Fatalf("%s: event error %v", st.name, got.Err)
		}
		if p := ring.Keyset("").Primary(); p != st.wantPrimary || got.Primary != p {
			t.Fatalf("%s: primary %d (event %d), want %d", st.name, p, got.Primary, st.wantPrimary)
		}
		if err := s.Unseal(proto2(old)); err != nil {
			t.Fatalf("%s: a value sealed before stopped opening: %v", st.name, err)
		}
	}
	if err := ring.Reload(); err != nil {
		t.Fatalf("an unchanged missing file is reported again: %v", err)
	}
	select {
	case e := <-ev:
		t.Fatalf("unexpected event %+v", e)
	default:
	}
}

func proto2(m *authv1.LoginRequest) *authv1.LoginRequest {
	return &authv1.LoginRequest{Username: m.GetUsername(), Password: m.GetPassword()}
}

// writeFile rewrites path in place and moves its modification time on, as
// a second write within a coarse clock tick would otherwise go unseen.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	fi, statErr := os.Stat(path)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if statErr == nil {
		later := fi.ModTime().Add(time.Second)
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeyringPolls(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "default.json")
	first := newKeyset(t)
	writeKeyset(t, path, first, nil)
	ev := make(events, 16)
	ring, err := fields.LoadKeyring(map[string]string{fields.DefaultKeyset: path},
		fields.WithReloadInterval(10*time.Millisecond), fields.WithKeyringHook(ev.hook))
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	next, err := first.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	writeKeyset(t, path, next, nil)
	if got := ev.next(t); got.Err != nil || got.Primary != next.Primary() {
		t.Fatalf("event %+v", got)
	}
	if ring.Keyset(fields.DefaultKeyset).Primary() != next.Primary() {
		t.Fatal("keyring did not swap the keyset")
	}
}

func TestLoadKeyringRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeKeyset(t, good, newKeyset(t), nil)
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, []byte("{"))
	tests := []struct {
		name  string
		files map[string]string
	}{
		{name: "no files"},
		{name: "missing file", files: map[string]string{"a": filepath.Join(dir, "nope.json")}},
		{name: "bad file", files: map[string]string{"a": good, "b": bad}},
		{name: "empty name", files: map[string]string{"": good}},
		{name: "name with separator", files: map[string]string{"a|b": good}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := fields.LoadKeyring(tt.files, fields.WithReloadInterval(time.Hour))
			if err == nil {
				r.Close()
				t.Fatal("loaded")
			}
			if !errors.Is(err, fields.ErrBadKeyset) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestKeysetFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, n := range []string{"default.json", "billing.json", ".hidden.json", "notes.txt"} {
		writeFile(t, filepath.Join(dir, n), []byte("{}"))
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := fields.KeysetFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files["default"] != filepath.Join(dir, "default.json") ||
		files["billing"] != filepath.Join(dir, "billing.json") {
		t.Fatalf("files = %v", files)
	}
	if _, err := fields.KeysetFiles(filepath.Join(dir, "none")); !errors.Is(err, fields.ErrBadKeyset) {
		t.Fatalf("err = %v", err)
	}
}

func TestKeyringNames(t *testing.T) {
	t.Parallel()
	r := newRing(t, "b", "a", fields.DefaultKeyset)
	if got := strings.Join(r.Names(), ","); got != "a,b,default" {
		t.Fatalf("names = %s", got)
	}
	if r.Keyset("missing") != nil || r.Keyset("") == nil {
		t.Fatal("lookup")
	}
	if err := r.Set("x", nil); !errors.Is(err, fields.ErrBadKeyset) {
		t.Fatalf("Set(nil) = %v", err)
	}
	if _, err := fields.NewSealer(nil); err == nil {
		t.Fatal("NewSealer(nil) succeeded")
	}
}

func TestRotateKeysetFile(t *testing.T) {
	t.Parallel()
	master := newMaster(t)
	tests := []struct {
		name   string
		master tink.AEAD
	}{
		{name: "cleartext"},
		{name: "encrypted", master: master},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "default.json")
			first := newKeyset(t)
			writeKeyset(t, path, first, tt.master)
			next, err := fields.RotateKeysetFile(path, tt.master)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fields.ReadKeysetFile(path, tt.master)
			if err != nil {
				t.Fatal(err)
			}
			if got.Primary() != next.Primary() || got.Primary() == first.Primary() ||
				!got.Enabled(first.Primary()) {
				t.Fatalf("rotated file: %v (was %v)", got, first)
			}
		})
	}
	_, err := fields.RotateKeysetFile(filepath.Join(t.TempDir(), "none.json"), nil)
	if !errors.Is(err, fields.ErrBadKeyset) {
		t.Fatalf("err = %v", err)
	}
}
