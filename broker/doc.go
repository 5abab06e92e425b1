// Package broker is moat's publish/subscribe layer: the [Broker] interface
// in go-micro's shape, a NATS implementation reached over mutual TLS 1.3
// ([NewNATS]), an in-process NATS server for development and tests
// ([StartEmbedded]), and an in-memory implementation for a single process
// ([NewMemory]).
//
// # Use
//
//	b, err := broker.NewNATS(
//		broker.WithIdentity(identity), // security.LoadIdentity(...)
//		broker.WithURL("tls://127.0.0.1:4222"),
//		broker.WithLogger(logger),
//	)
//	if err != nil {
//		return err // no identity or no URL: the error says how to get one
//	}
//	if err := b.Connect(ctx); err != nil {
//		return err
//	}
//	defer b.Disconnect(context.WithoutCancel(ctx))
//
//	sub, err := b.Subscribe("orders.created", func(ctx context.Context, m *broker.Message) error {
//		publisher, _ := broker.PublisherFromContext(ctx) // spiffe://…/svc/shop
//		return process(publisher, m.Body)
//	}, broker.WithQueue("billing"), broker.WithPublishers("shop"))
//
//	msg, err := broker.Encode(order, sealer) // protobuf body, sensitive fields sealed
//	err = b.Publish(ctx, "orders.created", msg)
//
// [WithQueue] shares a subscription's events among the members of a queue
// group. [WithDurable] makes it a JetStream durable consumer that receives
// events published while it was down and gets each event again until its
// handler returns nil; [WithPersistence] makes Publish wait until the
// stream stored the event.
//
// # Connection security
//
// A NATS broker cannot be built without a workload identity and a server
// URL. It speaks TLS 1.3 only, presents its workload certificate, and
// accepts the server only when its certificate chains to the trust bundle
// and carries the SPIFFE ID of the "nats" service of the same trust domain
// (spiffe://<trust-domain>/svc/nats, from 'moat certs issue nats'),
// whatever host name or address was dialled. [Embedded] servers require a
// client certificate from every client, verified the same way, and refuse
// plaintext. The HTTP monitoring endpoints of the embedded server are off.
//
// # Event security
//
// The NATS server terminates TLS, so a subscriber cannot learn from its
// connection who published an event, and the server itself could alter or
// replay events. Every event therefore travels in a signed envelope, and
// every subscription verifies it before the handler sees it:
//
//   - the publisher's certificate chain must chain to the subscriber's trust
//     bundle, be of the subscriber's trust domain, carry the clientAuth (or
//     any) extended key usage, a strong key and exactly one SPIFFE ID naming a
//     service, and be valid at the time the event was signed;
//   - the publisher named in the envelope must be the certificate's identity;
//   - the signature must verify with the certificate's key;
//   - the event must have been signed within the subscription's max age
//     ([WithMaxAge]; [DefaultMaxAge], or the stream max age for durable
//     subscriptions) and no further in the future than the clock skew
//     ([WithClockSkew]);
//   - with [WithPublishers], the publisher must be one of the listed services;
//   - its message id must not have been delivered to this subscription
//     before (a replay cache bounded by [WithReplayCacheSize]).
//
// A refused event is never delivered: it is reported to the hook set with
// [WithRefusalHook] with a [Reason], logged at warning level to the
// configured logger, and, on a durable subscription, terminated so that the
// server does not deliver it again.
//
// # Envelope format
//
// An event's NATS payload is the envelope: the five bytes "moat\x01"
// (name and format version), then protobuf wire-format fields, each at
// most once unless noted:
//
//	1 message id   bytes, 16 random bytes
//	2 timestamp    varint, signing time in Unix nanoseconds
//	3 publisher    string, the publisher's SPIFFE ID
//	4 chain        bytes, repeated: DER certificates, leaf first (at most 8)
//	5 header       repeated entry {1 key string; 2 value string}, sorted by key
//	6 body         bytes, the message body
//	7 signature    bytes
//
// Unknown fields, repeated singular fields and malformed entries make the
// envelope malformed; nothing can ride along unsigned. The signature is
// made over the SHA-256 digest of: the ASCII context "moat broker event
// v1" and a zero byte, then the topic, the message id, the publisher, the
// timestamp (8 bytes big-endian), the number of header entries (8 bytes
// big-endian), each header key and value in key order, and the body; each
// variable-length part is preceded by its length as 8 bytes big-endian.
// The algorithm follows from the certificate's key, never from the
// envelope: ECDSA (ASN.1 signature of the digest), RSA-PSS with SHA-256
// and a 32-byte salt, or Ed25519 over the 32-byte digest. The certificate
// chain is not signed: it is checked on its own and binds the key. Durable
// publishes also carry the message id in the Nats-Msg-Id header, which the
// stream uses to drop duplicate retries.
//
// # Topics and streams
//
// A topic is dot-separated tokens of ASCII letters, digits, '-' and '_', at
// most 255 bytes. Subscriptions may use NATS wildcards: '*' for one token,
// and '>' as the last token for one or more. A durable subscription or a
// persistent publish uses the stream named "moat_" followed by the topic's
// first token (which cannot be a wildcard), holding the subjects
// "<first>" and "<first>.>": topic "orders.created" lives in stream
// "moat_orders". A missing stream is created with file storage, the limits
// retention policy, the max age of [WithStreamMaxAge] and a two-minute
// duplicate window; an existing one is used as it is. A new durable
// consumer starts from the first stored event of its topic.
//
// # Limits
//
//   - The embedded server lets a workload join only the queue group named
//     after its own service ([WithQueue] with the service name), so that no
//     workload takes another's share of events. Otherwise any workload of
//     the trust domain may subscribe to any topic and use the JetStream API:
//     events are confidential against the network, not against other
//     workloads, and PII in event bodies is readable by them. Signatures
//     still stop them from forging or altering events. Fields that must stay
//     secret from other workloads are sealed with a [Sealer] before
//     publishing ([Encode]). An external NATS cluster needs the same queue
//     rule in its own authorization settings. TODO(broker): per-service
//     publish permissions and JetStream API limits on the embedded server.
//   - Each event carries its publisher's certificate chain, about 0.5 to
//     1.5 KiB, and costs one signature and one verification; chain
//     verification is cached per chain and trust bundle.
//   - Certificate revocation is not checked.
//   - The replay cache lives in memory: a subscriber that restarts can be
//     replayed events it received before, within the max age. For durable
//     subscriptions the server's redeliveries of one stored event are
//     accepted, as at-least-once delivery requires, so a compromised server
//     can deliver an event again within the max age.
//   - A subscription that receives more events within its max age than its
//     replay cache holds ([WithReplayCacheSize]) refuses, as expired, events
//     signed before the oldest one it still remembers: with publishers whose
//     clocks disagree by more than the time the cache spans, some of their
//     events are refused. The default of 65,536 ids spans over a minute at
//     1,000 events a second.
//   - Handlers of one subscription run one at a time, and each event costs a
//     signature check: about 50 to 120 µs of CPU for ECDSA P-256, which
//     bounds one subscription to some thousands of events a second.
//   - Events published without [WithPersistence] are delivered at most once
//     and only to subscribers connected at the time.
//   - A durable event whose handler keeps failing is delivered again, at
//     most a minute apart, for as long as the stream keeps it; there is no
//     dead-letter stream.
package broker
