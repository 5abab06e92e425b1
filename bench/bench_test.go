package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moatrpc/moat/security"
)

// The benchmarks below are the runner's measurements in testing.B form,
// for benchstat and pprof:
//
//	go test -run='^$' -bench=Handshake -count=10 ./bench/ > new.txt
//	benchstat -col /impl new.txt          # moat against crypto-tls
//	benchstat old.txt new.txt             # before against after a change
//	go test -run='^$' -bench='Handshake/impl=moat/key=ecdsa' -cpuprofile cpu.prof ./bench/
//	go tool pprof -top bench.test cpu.prof
//
// Sub-benchmark names are key=value pairs so that benchstat can pivot on
// any of them.

// BenchmarkHandshake runs sequential mutual TLS 1.3 handshakes over
// loopback TCP, client and server in this process: bare crypto/tls
// against moat's configurations, full and resumed.
func BenchmarkHandshake(b *testing.B) {
	ids := &keyIdentities{byKey: map[security.KeyType][2]*security.Identity{}}
	cfg := Config{KeyTypes: []security.KeyType{
		security.KeyECDSAP256, security.KeyEd25519, security.KeyRSA2048,
	}}
	for _, spec := range handshakeSpecs(cfg) {
		// A '/' would make a level of its own in the benchmark's name.
		impl := strings.ReplaceAll(spec.impl, "/", "-")
		name := "impl=" + impl + "/key=" + string(spec.key) + "/kx=" + spec.kx + "/mode=" + spec.mode
		b.Run(name, func(b *testing.B) {
			h, err := newHandshaker(spec, ids)
			if err != nil {
				b.Fatal(err)
			}
			defer h.close()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.once(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnary makes sequential calls of each built-in workload on each
// stack: the per-call hot path, for CPU profiles.
func BenchmarkUnary(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m, err := newMaterial()
	if err != nil {
		b.Fatal(err)
	}
	workloads := []Workload{ProfileWorkload(), EchoWorkload()}
	for _, st := range DefaultStacks() {
		for _, w := range workloads {
			b.Run("stack="+st.Name()+"/workload="+w.Name(), func(b *testing.B) {
				s, err := startStack(ctx, st, m, w)
				if errors.Is(err, ErrUnavailable) {
					b.Skip(err)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer s.ep.close()
				b.ReportAllocs()
				for b.Loop() {
					if err := w.Call(ctx, s.ep.conn); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkInterceptor runs moat's field interceptors around a handler
// that does nothing; impl=none is the bare call.
func BenchmarkInterceptor(b *testing.B) {
	m, err := newMaterial()
	if err != nil {
		b.Fatal(err)
	}
	sealer, err := newSealer()
	if err != nil {
		b.Fatal(err)
	}
	logger := newCallLogger()
	for _, spec := range interceptorSpecs {
		op, err := interceptorOp(spec, sealer, logger, m)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("impl="+spec.name+"/side="+spec.side+"/message="+spec.message, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := op(1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
