package fields_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

var update = flag.Bool("update", false, "rewrite the golden files and fuzz seeds under testdata")

// keysetFiles are development keysets kept for the golden and fuzz tests
// only. They are cleartext on purpose and protect nothing.
var keysetFiles = map[string]string{
	fields.DefaultKeyset: filepath.Join("testdata", "keysets", "default.json"),
	"billing":            filepath.Join("testdata", "keysets", "billing.json"),
}

func testdataKeyring(tb testing.TB) *fields.Keyring {
	tb.Helper()
	r, err := fields.LoadKeyring(keysetFiles, fields.WithReloadInterval(0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

const goldenPath = "testdata/golden/login_request.binpb"

// goldenPlain is what the golden message unseals to.
func goldenPlain() *authv1.LoginRequest {
	return &authv1.LoginRequest{Username: "ada", Password: "correct horse battery staple"}
}

// TestGoldenEnvelope opens a message sealed by an earlier build, so that a
// change of envelope format or associated data cannot pass unnoticed.
// Run with -update to regenerate the keysets, the golden file and the fuzz
// seeds.
func TestGoldenEnvelope(t *testing.T) {
	if *update {
		writeTestdata(t)
	}
	data, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	got := &authv1.LoginRequest{}
	if err := proto.Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if got.GetPassword() == goldenPlain().GetPassword() {
		t.Fatal("golden message is not sealed")
	}
	s := newSealer(t, testdataKeyring(t), fields.WithRequireSealed())
	if err := s.Unseal(got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, goldenPlain()) {
		t.Fatalf("golden message opened to %v", got)
	}
}

func writeTestdata(t *testing.T) {
	t.Helper()
	for _, path := range keysetFiles {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err == nil {
			continue
		}
		writeKeyset(t, path, newKeyset(t), nil)
	}
	s := newSealer(t, testdataKeyring(t))
	golden := goldenPlain()
	if err := s.Seal(golden); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, goldenPath, mustMarshal(t, golden))

	var seeds [][]byte
	for seed := range uint64(6) {
		m := newGen(seed).envelope()
		if err := s.Seal(m); err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, mustMarshal(t, m))
	}
	sealed := &testpb.Envelope{Token: "x", Blob: []byte("y")}
	if err := s.Seal(sealed); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, []byte(sealed.GetToken()), sealed.GetBlob(), mustMarshal(t, golden))
	writeSeeds(t, "FuzzUnseal", seeds)
	writeSeeds(t, "FuzzEnvelope", [][]byte{[]byte(sealed.GetToken()), sealed.GetBlob(),
		[]byte("moat:v1:"), []byte("moat:v9:AAAA"), []byte("\x00moat\x01\x01")})
}

func writeSeeds(t *testing.T, target string, seeds [][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzUnseal unseals arbitrary messages and arbitrary envelopes in every
// shape of field. Unseal must not panic, must fail only with a
// *fields.Error, and what it accepts must still marshal.
func FuzzUnseal(f *testing.F) {
	ring := testdataKeyring(f)
	sealers := []*fields.Sealer{
		newSealer(f, ring),
		newSealer(f, ring, fields.WithRequireSealed(), fields.WithMissingKeyset(fields.Refuse)),
	}
	partial, err := fields.NewKeyring(map[string]*fields.Keyset{fields.DefaultKeyset: ring.Keyset("")})
	if err != nil {
		f.Fatal(err)
	}
	sealers = append(sealers, newSealer(f, partial, fields.WithMissingKeyset(fields.Refuse)))
	f.Fuzz(func(t *testing.T, in []byte) {
		bin := append([]byte("\x00moat\x01"), in...)
		msgs := []proto.Message{
			&testpb.Envelope{Blob: in, Blobs: [][]byte{in, bin}, KeyedBlobs: map[int64][]byte{1: bin},
				Inner: &testpb.Inner{Raw: bin}},
			&testpb.Leaf{Key: bin},
		}
		if utf8.Valid(in) {
			txt := "moat:v1:" + string(in)
			msgs = append(msgs,
				&testpb.Envelope{Token: string(in), Tokens: []string{txt}, Maybe: &txt,
					Secrets: map[string]string{"k": txt}, OtherKey: txt,
					Choice: &testpb.Envelope_ChoiceSecret{ChoiceSecret: txt}},
				&authv1.LoginRequest{Password: txt})
		}
		for _, m := range []proto.Message{&testpb.Envelope{}, &authv1.LoginRequest{}, &testpb.Link{}} {
			if proto.Unmarshal(in, m) == nil {
				msgs = append(msgs, m)
			}
		}
		for _, m := range msgs {
			for _, s := range sealers {
				c := proto.Clone(m)
				err := s.Unseal(c)
				var fe *fields.Error
				if err != nil && !errors.As(err, &fe) {
					t.Fatalf("untyped error %v", err)
				}
				if err != nil {
					continue
				}
				if _, err := proto.Marshal(c); err != nil {
					t.Fatalf("unsealed message does not marshal: %v", err)
				}
			}
		}
	})
}

// TestFuzzSeedsPresent keeps the seed corpus from vanishing unnoticed.
func TestFuzzSeedsPresent(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"FuzzUnseal", "FuzzEnvelope"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
		if err != nil || len(entries) == 0 {
			t.Fatalf("%s: no seed corpus (%v); run go test -run TestGoldenEnvelope -update", target, err)
		}
	}
}
