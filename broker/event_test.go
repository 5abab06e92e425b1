package broker

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moatrpc/moat/security"
)

// craft builds an envelope by hand, signed with key over what it claims.
func craft(
	t testing.TB,
	topic string,
	body []byte,
	at time.Time,
	publisher string,
	chain [][]byte,
	key crypto.Signer,
) []byte {
	t.Helper()
	e := &envelope{time: at.UnixNano(), publisher: publisher, chain: chain, body: body}
	if _, err := rand.Read(e.id[:]); err != nil {
		t.Fatal(err)
	}
	d := e.digest(topic)
	sig, err := signDigest(key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	e.signature = sig
	return e.marshal()
}

func sealed(t testing.TB, src security.Source, topic string, msg *Message, at time.Time) []byte {
	t.Helper()
	_, data, err := seal(src, topic, msg, at)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// reseal parses data, lets change alter the envelope, and encodes it
// again without signing it anew.
func reseal(t testing.TB, data []byte, change func(*envelope)) []byte {
	t.Helper()
	e, err := parseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	change(e)
	return e.marshal()
}

func signerOf(t testing.TB, id *security.Identity) crypto.Signer {
	t.Helper()
	return id.TLSCertificate().PrivateKey.(crypto.Signer)
}

// TestEventRefusals publishes forged, stale and replayed events over the
// real server and checks that each is refused with its reason and never
// reaches the handler.
func TestEventRefusals(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	shop := identity(t, env.ca, "shop")
	raw := env.clientAs(t, shop) // its connection sends crafted bytes as they are
	now := time.Now()
	admin, _ := security.ServiceID(testTrustDomain, "admin")

	otherCA := identity(t, newCA(t, testTrustDomain), "shop")
	otherTD := identity(t, newCA(t, "evil.test"), "shop")
	expiredCert, expiredKey := issueRaw(t, env.ca, "shop",
		security.WithValidity(now.Add(-3*time.Hour), now.Add(-2*time.Hour)))
	futureCert, futureKey := issueRaw(t, env.ca, "shop",
		security.WithValidity(now.Add(time.Hour), now.Add(2*time.Hour)))
	attackerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		subs []SubscribeOption
		// payloads builds what is published, in order, on topic.
		payloads func(topic string) [][]byte
		want     Reason
		// delivered is how many of the payloads must reach the handler.
		delivered int
		// sentinel publishes the valid event that follows; default shop.
		sentinel *security.Identity
	}{
		{
			name:     "unsigned bytes",
			payloads: func(string) [][]byte { return [][]byte{[]byte("hello")} },
			want:     ReasonUnsigned,
		},
		{
			name: "envelope without signature",
			payloads: func(topic string) [][]byte {
				return [][]byte{sealed(t, nil, topic, &Message{Body: []byte("x")}, now)}
			},
			want: ReasonUnsigned,
		},
		{
			name: "malformed envelope",
			payloads: func(string) [][]byte {
				return [][]byte{append([]byte(envelopeMagic), 0xff, 0xff, 0xff)}
			},
			want: ReasonMalformed,
		},
		{
			name: "body changed",
			payloads: func(topic string) [][]byte {
				data := sealed(t, shop, topic, &Message{Body: []byte("pay 10")}, now)
				return [][]byte{reseal(t, data, func(e *envelope) { e.body = []byte("pay 1000") })}
			},
			want: ReasonBadSignature,
		},
		{
			name: "header added",
			payloads: func(topic string) [][]byte {
				data := sealed(t, shop, topic, &Message{Body: []byte("x")}, now)
				return [][]byte{reseal(t, data, func(e *envelope) {
					e.header = map[string]string{"Role": "admin"}
				})}
			},
			want: ReasonBadSignature,
		},
		{
			name: "timestamp changed",
			payloads: func(topic string) [][]byte {
				data := sealed(t, shop, topic, &Message{Body: []byte("x")}, now)
				return [][]byte{reseal(t, data, func(e *envelope) { e.time++ })}
			},
			want: ReasonBadSignature,
		},
		{
			name: "signed for another topic",
			payloads: func(string) [][]byte {
				return [][]byte{sealed(t, shop, "sec.elsewhere", &Message{Body: []byte("x")}, now)}
			},
			want: ReasonBadSignature,
		},
		{
			name: "certificate of shop, key of an attacker",
			payloads: func(topic string) [][]byte {
				return [][]byte{craft(t, topic, []byte("x"), now, shop.ID().String(),
					shop.TLSCertificate().Certificate, attackerKey)}
			},
			want: ReasonBadSignature,
		},
		{
			name: "claims another publisher than its certificate",
			payloads: func(topic string) [][]byte {
				return [][]byte{craft(t, topic, []byte("x"), now, admin.String(),
					shop.TLSCertificate().Certificate, signerOf(t, shop))}
			},
			want: ReasonWrongPublisher,
		},
		{
			name: "certificate from another CA",
			payloads: func(topic string) [][]byte {
				return [][]byte{sealed(t, otherCA, topic, &Message{Body: []byte("x")}, now)}
			},
			want: ReasonUntrustedPublisher,
		},
		{
			name: "certificate of another trust domain",
			payloads: func(topic string) [][]byte {
				return [][]byte{sealed(t, otherTD, topic, &Message{Body: []byte("x")}, now)}
			},
			want: ReasonUntrustedPublisher,
		},
		{
			name: "certificate expired when signed",
			payloads: func(topic string) [][]byte {
				return [][]byte{craft(t, topic, []byte("x"), now, shop.ID().String(),
					[][]byte{expiredCert}, expiredKey)}
			},
			want: ReasonUntrustedPublisher,
		},
		{
			name: "certificate not yet valid when signed",
			payloads: func(topic string) [][]byte {
				return [][]byte{craft(t, topic, []byte("x"), now, shop.ID().String(),
					[][]byte{futureCert}, futureKey)}
			},
			want: ReasonUntrustedPublisher,
		},
		{
			name: "too old",
			payloads: func(topic string) [][]byte {
				return [][]byte{sealed(t, shop, topic, &Message{Body: []byte("x")},
					time.Now().Add(-DefaultMaxAge-time.Minute))}
			},
			want: ReasonExpired,
		},
		{
			name: "older than the subscription's max age",
			subs: []SubscribeOption{WithMaxAge(time.Second)},
			payloads: func(topic string) [][]byte {
				return [][]byte{sealed(t, shop, topic, &Message{Body: []byte("x")},
					time.Now().Add(-5*time.Second))}
			},
			want: ReasonExpired,
		},
		{
			name: "from the future",
			payloads: func(topic string) [][]byte {
				return [][]byte{sealed(t, shop, topic, &Message{Body: []byte("x")},
					time.Now().Add(DefaultClockSkew+time.Minute))}
			},
			want: ReasonFutureTimestamp,
		},
		{
			name: "replayed",
			payloads: func(topic string) [][]byte {
				data := sealed(t, shop, topic, &Message{Body: []byte("x")}, time.Now())
				return [][]byte{data, data}
			},
			want:      ReasonReplayed,
			delivered: 1,
		},
		{
			name: "publisher not allowed",
			subs: []SubscribeOption{WithPublishers("auth", "billing")},
			payloads: func(topic string) [][]byte {
				return [][]byte{sealed(t, shop, topic, &Message{Body: []byte("x")}, time.Now())}
			},
			want:     ReasonPublisherNotAllowed,
			sentinel: identity(t, env.ca, "auth"),
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			topic := fmt.Sprintf("sec.case%d", i)
			refused := newRefusals()
			sub := env.client(t, "billing", WithRefusalHook(refused.hook))
			rec := newRecorder(8)
			if _, err := sub.Subscribe(topic, rec.handle, tt.subs...); err != nil {
				t.Fatal(err)
			}
			flush(t, sub)

			nc, _, err := raw.conn()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.payloads(topic) {
				if err := nc.Publish(topic, p); err != nil {
					t.Fatal(err)
				}
			}
			ev := refused.next(t, 10*time.Second)
			if ev.Reason != tt.want {
				t.Fatalf("refused as %q (%v), want %q", ev.Reason, ev.Err, tt.want)
			}
			if ReasonOf(ev.Err) != tt.want || ev.Topic != topic || ev.Subscription != topic {
				t.Errorf("refusal %+v", ev)
			}
			var re *RefusalError
			if !errors.As(ev.Err, &re) || !strings.HasPrefix(re.Error(), "broker: ") {
				t.Errorf("refusal error %v", ev.Err)
			}

			// A valid event published after the refused ones arrives after
			// them: once it is in, nothing refused can still come.
			from := shop
			if tt.sentinel != nil {
				from = tt.sentinel
			}
			sentinel := sealed(t, from, topic, &Message{Body: []byte("sentinel")}, time.Now())
			if err := nc.Publish(topic, sentinel); err != nil {
				t.Fatal(err)
			}
			for range tt.delivered {
				if rc := rec.next(t, 10*time.Second); string(rc.msg.Body) == "sentinel" {
					t.Fatal("sentinel before the expected deliveries")
				}
			}
			if rc := rec.next(t, 10*time.Second); string(rc.msg.Body) != "sentinel" {
				t.Fatalf("refused event delivered: %q", rc.msg.Body)
			}
			if n := rec.count(); n != tt.delivered+1 {
				t.Errorf("handler ran %d times, want %d", n, tt.delivered+1)
			}
		})
	}
}

// issueRaw issues a certificate without the checks of security.Identity,
// which refuses expired material; it returns the DER and the key.
func issueRaw(
	t testing.TB,
	ca *security.CA,
	service string,
	opts ...security.IssueOption,
) ([]byte, crypto.Signer) {
	t.Helper()
	is, err := ca.Issue(service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(is.KeyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return is.Leaf.Raw, key.(crypto.Signer)
}

func TestKeyTypes(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	tests := []struct {
		name string
		key  security.KeyType
	}{
		{"ECDSA P-256", security.KeyECDSAP256},
		{"Ed25519", security.KeyEd25519},
		{"RSA-PSS 2048", security.KeyRSA2048},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pub := identity(t, ca, "shop", security.WithKeyType(tt.key))
			sub := identity(t, ca, "billing")
			data := sealed(t, pub, "keys.test", &Message{Body: []byte("x")}, time.Now())
			e, err := parseEnvelope(data)
			if err != nil {
				t.Fatal(err)
			}
			ck := &checker{chains: newChainVerifier(sub), now: time.Now, skew: DefaultClockSkew,
				maxAge: DefaultMaxAge, replay: newReplayCache(16)}
			ev, r := ck.check("keys.test", e, delivery{count: 1})
			if r != nil {
				t.Fatalf("refused: %v", r)
			}
			if ev.Publisher != pub.ID() {
				t.Errorf("publisher %v", ev.Publisher)
			}
			e.body = []byte("y")
			e.id[0]++
			_, r = ck.check("keys.test", e, delivery{count: 1})
			if ReasonOf(r) != ReasonBadSignature {
				t.Errorf("tampered event: %v", r)
			}
		})
	}
}

// TestChainCacheFollowsRotation checks that a subscriber whose trust
// bundle changes re-verifies chains it had accepted before.
func TestChainCacheFollowsRotation(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testTrustDomain)
	next := newCA(t, testTrustDomain)
	pub := identity(t, ca, "shop")
	src := &rotating{id: identity(t, ca, "billing")}
	v := newChainVerifier(src)
	if _, r := v.chain(pub.TLSCertificate().Certificate); r != nil {
		t.Fatalf("refused before rotation: %v", r)
	}
	src.set(identity(t, next, "billing"))
	if _, r := v.chain(pub.TLSCertificate().Certificate); ReasonOf(r) != ReasonUntrustedPublisher {
		t.Fatalf("after rotation to another CA: %v, want untrusted", r)
	}
}
