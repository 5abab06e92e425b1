package bench

import (
	"fmt"
	"slices"
	"time"

	"github.com/moatrpc/moat/security"
)

// Kind names a family of measurements.
type Kind string

// Kinds of measurements, run in this order.
const (
	// KindUnary: calls per second, latency percentiles, allocations, bytes
	// and CPU per call of each workload on each stack, at each level of
	// concurrency.
	KindUnary Kind = "unary"
	// KindStream: throughput of server streaming of [ChunkSize] messages.
	KindStream Kind = "stream"
	// KindHandshake: full and resumed mutual TLS 1.3 handshakes per second
	// and CPU per handshake, moat against bare crypto/tls.
	KindHandshake Kind = "handshake"
	// KindInterceptor: nanoseconds a call spends in moat's field
	// interceptors, measured around a handler that does nothing.
	KindInterceptor Kind = "interceptor"
	// KindColdStart: time from rpc.NewService to the first successful call,
	// with an in-memory registry and through a real Consul agent.
	KindColdStart Kind = "coldstart"
)

// AllKinds lists every kind of measurement in the order a run takes them.
func AllKinds() []Kind {
	return []Kind{KindUnary, KindStream, KindHandshake, KindInterceptor, KindColdStart}
}

// ConsulMode says whether the cold start goes through a Consul agent.
type ConsulMode string

// Consul modes.
const (
	// ConsulAuto uses Consul when a consul binary is found, else skips
	// that measurement with a note.
	ConsulAuto ConsulMode = "auto"
	// ConsulOn requires Consul: the run fails without a binary.
	ConsulOn ConsulMode = "on"
	// ConsulOff skips the cold start through Consul.
	ConsulOff ConsulMode = "off"
)

// Config is what a run measures and for how long. The zero Config is
// completed by [Config.withDefaults]: the full run of 'moat bench'.
type Config struct {
	// Duration of each measurement; default 500ms.
	Duration time.Duration
	// Warmup before each measurement; default a tenth of Duration.
	Warmup time.Duration
	// Repeats is the number of rounds: each round measures every case
	// once, in an order rotated from round to round; default 8. More
	// rounds of shorter measurements pair the cases compared more closely
	// in time, which matters on a busy machine.
	Repeats int
	// Concurrency lists the numbers of unary calls kept in flight;
	// default 1, 16 and 64.
	Concurrency []int
	// Stacks to compare; default [DefaultStacks].
	Stacks []Stack
	// Workloads are the unary calls measured on every stack; the first is
	// the primary one, which unary budgets use unless they name another.
	// Default [EchoWorkload] then [ProfileWorkload].
	Workloads []Workload
	// Kinds of measurements to run; default [AllKinds].
	Kinds []Kind
	// KeyTypes of the leaves of the handshake measurements; default
	// ECDSA P-256, Ed25519 and RSA-2048.
	KeyTypes []security.KeyType
	// HandshakeParallel is the number of handshakes kept in flight;
	// default GOMAXPROCS.
	HandshakeParallel int
	// Consul says whether to measure the cold start through Consul;
	// default [ConsulAuto].
	Consul ConsulMode
	// ConsulBinary is the consul executable; empty finds one as
	// 'moat dev' does (MOAT_CONSUL_BIN, bin/consul, $PATH).
	ConsulBinary string
	// Budgets are checked against the results; nil checks none.
	Budgets *Budgets
	// Progress, when set, is called after each measurement. It runs on
	// the runner's goroutine and must return quickly.
	Progress func(Progress)
	// Quick marks a smoke run in the report.
	Quick bool
}

// QuickConfig is a smoke run of a few seconds: every kind of measurement,
// tiny durations, two rounds, one key type, no Consul. Its numbers are
// too noisy to judge anything; it checks that the runner works.
func QuickConfig() Config {
	return Config{
		Duration:    100 * time.Millisecond,
		Warmup:      20 * time.Millisecond,
		Repeats:     2,
		Concurrency: []int{1, 8},
		KeyTypes:    []security.KeyType{security.KeyECDSAP256},
		Consul:      ConsulOff,
		Quick:       true,
	}
}

func (c Config) withDefaults() (Config, error) {
	if c.Duration == 0 {
		c.Duration = 500 * time.Millisecond
	}
	if c.Warmup == 0 {
		c.Warmup = c.Duration / 10
	}
	if c.Repeats == 0 {
		c.Repeats = 8
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = []int{1, 16, 64}
	}
	if len(c.Stacks) == 0 {
		c.Stacks = DefaultStacks()
	}
	if len(c.Workloads) == 0 {
		c.Workloads = []Workload{EchoWorkload(), ProfileWorkload()}
	}
	if len(c.Kinds) == 0 {
		c.Kinds = AllKinds()
	}
	if len(c.KeyTypes) == 0 {
		c.KeyTypes = []security.KeyType{security.KeyECDSAP256, security.KeyEd25519, security.KeyRSA2048}
	}
	if c.Consul == "" {
		c.Consul = ConsulAuto
	}
	if c.Duration < 0 || c.Warmup < 0 || c.Repeats < 0 || c.HandshakeParallel < 0 {
		return c, fmt.Errorf("bench: durations, repeats and parallelism must not be negative")
	}
	for _, n := range c.Concurrency {
		if n < 1 || n > 4096 {
			return c, fmt.Errorf("bench: concurrency %d out of range 1 to 4096", n)
		}
	}
	for _, k := range c.Kinds {
		if !slices.Contains(AllKinds(), k) {
			return c, fmt.Errorf("bench: unknown kind %q (want one of %v)", k, AllKinds())
		}
	}
	keys := c.KeyTypes
	c.KeyTypes = nil
	for _, k := range keys {
		switch {
		case k != security.KeyECDSAP256 && k != security.KeyEd25519 && k != security.KeyRSA2048:
			return c, fmt.Errorf("bench: unknown key type %q (want %s, %s or %s)", k,
				security.KeyECDSAP256, security.KeyEd25519, security.KeyRSA2048)
		case !slices.Contains(c.KeyTypes, k):
			c.KeyTypes = append(c.KeyTypes, k)
		}
	}
	switch c.Consul {
	case ConsulAuto, ConsulOn, ConsulOff:
	default:
		return c, fmt.Errorf("bench: consul mode %q: want auto, on or off", c.Consul)
	}
	seen := map[string]bool{}
	for _, s := range c.Stacks {
		if s.name == "" || seen[s.name] {
			return c, fmt.Errorf("bench: stack names must be unique and non-empty (%q)", s.name)
		}
		seen[s.name] = true
	}
	seen = map[string]bool{}
	for _, w := range c.Workloads {
		if err := validateWorkload(w); err != nil {
			return c, err
		}
		if seen[w.Name()] {
			return c, fmt.Errorf("bench: two workloads named %q", w.Name())
		}
		seen[w.Name()] = true
	}
	return c, nil
}

func (c Config) runs(k Kind) bool { return slices.Contains(c.Kinds, k) }
