package broker

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/moatrpc/moat/security"
)

const benchBody = 256

// BenchmarkPublishReceive measures publish-to-handler delivery through the
// embedded server over mutual TLS, with moat's signed envelopes ("moat")
// and with plain nats.go publish/subscribe on the same connections
// ("plain"). Window is how many events may be in flight: 1 measures the
// latency of a lone event, 256 the throughput of a stream.
func BenchmarkPublishReceive(b *testing.B) {
	for _, window := range []int{1, 256} {
		for _, mode := range []string{"moat", "plain"} {
			b.Run(mode+"/window="+strconv.Itoa(window), func(b *testing.B) {
				benchPublishReceive(b, mode, window)
			})
		}
	}
}

func benchPublishReceive(b *testing.B, mode string, window int) {
	env := newEnv(b)
	pub := env.client(b, "shop")
	sub := env.client(b, "billing")
	latencies := make([]time.Duration, 0, b.N)
	sem := make(chan struct{}, window)
	done := make(chan struct{})
	record := func(sent time.Time) {
		latencies = append(latencies, time.Since(sent))
		<-sem
		if len(latencies) == b.N {
			close(done)
		}
	}
	body := make([]byte, benchBody)
	ctx := context.Background()

	var publish func() error
	switch mode {
	case "moat":
		_, err := sub.Subscribe("bench.events", func(ctx context.Context, _ *Message) error {
			ev, _ := EventFromContext(ctx)
			record(ev.Time)
			return nil
		}, WithPendingLimits(1<<20, 1<<30))
		if err != nil {
			b.Fatal(err)
		}
		msg := &Message{Body: body}
		publish = func() error { return pub.Publish(ctx, "bench.events", msg) }
	case "plain":
		snc, _, _ := sub.conn()
		s, err := snc.Subscribe("bench.events", func(m *nats.Msg) {
			record(time.Unix(0, int64(binary.BigEndian.Uint64(m.Data))))
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetPendingLimits(1<<20, 1<<30); err != nil {
			b.Fatal(err)
		}
		flush(b, sub)
		pnc, _, _ := pub.conn()
		publish = func() error {
			// The plain payload carries its send time in place of moat's
			// envelope timestamp; it is copied as nats.go does not keep it.
			binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
			return pnc.Publish("bench.events", body)
		}
	}
	pnc, _, _ := pub.conn()

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		sem <- struct{}{}
		if err := publish(); err != nil {
			b.Fatal(err)
		}
		if window == 1 {
			// A lone event leaves at once instead of waiting for the
			// client's flusher to batch it.
			if err := pnc.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("received %d of %d", len(latencies), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSealVerify measures signing and verifying one event per key
// type, without the network.
func BenchmarkSealVerify(b *testing.B) {
	ca := newCA(b, testTrustDomain)
	keys := []security.KeyType{security.KeyECDSAP256, security.KeyEd25519, security.KeyRSA2048}
	for _, kt := range keys {
		pub := identity(b, ca, "shop", security.WithKeyType(kt))
		sub := identity(b, ca, "billing")
		msg := &Message{Body: make([]byte, benchBody)}
		b.Run("seal/"+string(kt), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, _, err := seal(pub, "bench.events", msg, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("verify/"+string(kt), func(b *testing.B) {
			ck := &checker{chains: newChainVerifier(sub), now: time.Now, skew: DefaultClockSkew,
				maxAge: DefaultMaxAge, replay: newReplayCache(DefaultReplayCacheSize)}
			envs := make([][]byte, min(b.N, 4096))
			for i := range envs {
				_, envs[i], _ = seal(pub, "bench.events", msg, time.Now())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i > 0 && i%len(envs) == 0 {
					// The envelopes come round again: forget their ids.
					b.StopTimer()
					ck.replay = newReplayCache(DefaultReplayCacheSize)
					b.StartTimer()
				}
				e, err := parseEnvelope(envs[i%len(envs)])
				if err != nil {
					b.Fatal(err)
				}
				if _, r := ck.check("bench.events", e, delivery{count: 1}); r != nil {
					b.Fatal(r)
				}
			}
		})
	}
}
