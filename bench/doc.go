// Package bench measures moat's hot path side by side with grpc-go
// baselines, in one process over loopback, and checks latency and cost
// budgets: 'moat bench' and 'make bench' run it.
//
// # What a run measures
//
// Every case of a kind is measured once per round. Within a round, the
// cases that are compared (the same workload and concurrency on each
// stack, the same handshake for moat and crypto/tls) run back to back, in
// an order rotated from round to round, so that a change in the machine's
// load touches them alike. Figures are medians over the rounds, with their
// range; ratio budgets divide two cases of the same round, then take the
// median of those ratios.
//
//   - [KindUnary]: each [Workload] on each [Stack] at each level of
//     concurrency (calls kept in flight): calls per second, p50/p90/p99
//     latency, and allocations, bytes and CPU time per call. Client and
//     server share the process, so per-call figures hold both sides.
//   - [KindStream]: server streaming of [ChunkSize] messages, MB/s.
//   - [KindHandshake]: full mutual TLS 1.3 handshakes with ECDSA P-256,
//     Ed25519 and RSA-2048 leaves, with X25519 and with Go's default hybrid
//     X25519MLKEM768, and resumed ones from a client session cache; moat's
//     configurations against bare crypto/tls with standard verification.
//     Resumed moat handshakes are checked to have resumed and to have
//     passed moat's verification on both sides, and a resumed session of a
//     server revoked since is checked to be refused.
//   - [KindInterceptor]: nanoseconds per call of the sealing interceptors
//     of security/fields on a message without sensitive fields and on one
//     with a SECRET field, and of the redacting call logger, over a bare
//     handler.
//   - [KindColdStart]: time from rpc.NewService to the first successful
//     call, through an in-memory registry and through a real Consul agent
//     (internal/devenv), skipped with a note when there is no consul
//     binary.
//
// # Stacks
//
// [PlaintextStack] (grpc-go without encryption; the only plaintext in
// moat, kept here as a measuring stick) and [TLSStack] (grpc-go with
// credentials.NewTLS) are the baselines; [MoatStack] is rpc.NewService with
// a client service's connection; [SealedStack] adds field encryption
// (rpc.WithKeyring) and [FieldsStack] the redacting call log
// (rpc.WithCallLog) on top. moat without a keyset refuses to serve SECRET
// fields, so [MoatStack] skips workloads that carry them, with a note.
// [MoatStack] takes extra rpc options, to measure moat with your own
// interceptors.
//
// # Measuring your own service
//
// A [Workload] is a unary call: the service that answers it and the call.
// [Unary] builds one from generated code:
//
//	w := bench.Unary("greet", greeterv1.GreeterService_Greet_FullMethodName,
//		func(s grpc.ServiceRegistrar) { greeterv1.RegisterGreeterServiceServer(s, &greeter{}) },
//		func() proto.Message { return &greeterv1.GreetRequest{Name: "ada"} },
//		func() proto.Message { return new(greeterv1.GreetResponse) })
//	rep, err := bench.Run(ctx, bench.Config{
//		Workloads: []bench.Workload{w},
//		Kinds:     []bench.Kind{bench.KindUnary},
//		Budgets:   budgets, // bench.LoadBudgets("budgets.yaml")
//	})
//
// The first workload is the primary one, which ratio budgets use unless
// they name another. Implement [Workload] directly for calls that need more
// than a request factory (metadata, a changing request).
//
// # Noise
//
// Absolute numbers depend on the machine and on whatever else runs on it;
// ratios between stacks measured in the same round much less so. Tests
// never assert absolute times: the smoke run of 'make test' checks that
// the runner works, not what it measures.
package bench
