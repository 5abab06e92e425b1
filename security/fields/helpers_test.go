package fields_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"

	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/security/fields/internal/testpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newRing returns a keyring with a fresh keyset for each name.
func newRing(t testing.TB, names ...string) *fields.Keyring {
	t.Helper()
	sets := map[string]*fields.Keyset{}
	for _, n := range names {
		sets[n] = newKeyset(t)
	}
	r, err := fields.NewKeyring(sets)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newKeyset(t testing.TB) *fields.Keyset {
	t.Helper()
	ks, err := fields.NewKeyset()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func newSealer(t testing.TB, r *fields.Keyring, opts ...fields.SealerOption) *fields.Sealer {
	t.Helper()
	s, err := fields.NewSealer(r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gen builds random Envelopes and remembers every SECRET plaintext it put
// in them.
type gen struct {
	r       *rand.Rand
	secrets []string
}

func newGen(seed uint64) *gen { return &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e37))} }

// secret returns a distinctive random plaintext, sometimes long, sometimes
// with multi-byte runes.
func (g *gen) secret() string {
	s := fmt.Sprintf("pt-%016x", g.r.Uint64())
	switch g.r.IntN(4) {
	case 0:
		s += "-é漢字🔑"
	case 1:
		for range g.r.IntN(64) {
			s += fmt.Sprintf("%x", g.r.Uint32())
		}
	}
	g.secrets = append(g.secrets, s)
	return s
}

func (g *gen) maybe() bool { return g.r.IntN(3) > 0 }

func (g *gen) inner(depth int) *testpb.Inner {
	in := &testpb.Inner{Label: fmt.Sprintf("label-%d", g.r.IntN(1000))}
	if g.maybe() {
		in.Secret = g.secret()
	}
	if g.maybe() {
		in.Raw = []byte(g.secret())
	}
	if depth > 0 && g.maybe() {
		in.Child = g.inner(depth - 1)
	}
	return in
}

func (g *gen) envelope() *testpb.Envelope {
	e := &testpb.Envelope{Id: fmt.Sprintf("id-%d", g.r.IntN(1000))}
	if g.maybe() {
		e.Token = g.secret()
	}
	if g.maybe() {
		e.Blob = []byte(g.secret())
	}
	for range g.r.IntN(4) {
		e.Tokens = append(e.Tokens, g.secret())
	}
	for range g.r.IntN(4) {
		e.Blobs = append(e.Blobs, []byte(g.secret()))
	}
	if n := g.r.IntN(4); n > 0 {
		e.Secrets = map[string]string{}
		for i := range n {
			e.Secrets[fmt.Sprintf("k%d", i)] = g.secret()
		}
	}
	if n := g.r.IntN(3); n > 0 {
		e.KeyedBlobs = map[int64][]byte{}
		for i := range n {
			e.KeyedBlobs[int64(i)*7] = []byte(g.secret())
		}
	}
	if g.maybe() {
		e.Inner = g.inner(3)
	}
	for range g.r.IntN(3) {
		e.Inners = append(e.Inners, g.inner(2))
	}
	if n := g.r.IntN(3); n > 0 {
		e.InnerMap = map[string]*testpb.Inner{}
		for i := range n {
			e.InnerMap[fmt.Sprintf("m%d", i)] = g.inner(1)
		}
	}
	switch g.r.IntN(4) {
	case 0:
		e.Choice = &testpb.Envelope_ChoiceSecret{ChoiceSecret: g.secret()}
	case 1:
		e.Choice = &testpb.Envelope_ChoiceInner{ChoiceInner: g.inner(1)}
	case 2:
		e.Choice = &testpb.Envelope_ChoicePublic{ChoicePublic: "public"}
	}
	if g.maybe() {
		s := g.secret()
		e.Maybe = &s
	}
	if g.maybe() {
		e.OtherKey = g.secret()
	}
	if g.maybe() {
		e.Email = "someone@example.org"
		e.Account = 42
		e.Kind = testpb.Kind_KIND_B
	}
	return e
}

func errorsAs(err error, fe **fields.Error) bool { return errors.As(err, fe) }
