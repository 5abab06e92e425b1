// Package fields protects the sensitive fields of protobuf messages: it
// seals (encrypts) fields marked SECRET inside the message, and redacts
// fields marked PII or SECRET from everything moat logs.
//
// # Marking fields
//
// Services mark fields in their own .proto files with moat's option:
//
//	import "moat/options/v1/options.proto";
//
//	message LoginRequest {
//	  string username = 1;
//	  string password = 2 [(moat.options.v1.field).sensitivity = SENSITIVITY_SECRET];
//	  string email    = 3 [(moat.options.v1.field).sensitivity = SENSITIVITY_PII];
//	  bytes  card     = 4 [(moat.options.v1.field) = {
//	    sensitivity: SENSITIVITY_SECRET
//	    key: "billing"
//	  }];
//	}
//
// protobuf's standard debug_redact option counts as PII.
//
// PII travels inside TLS only, and is redacted from logs. Anything that
// terminates TLS with a certificate the client trusts (a proxy, a sidecar,
// a load balancer) sees PII in clear.
//
// SECRET values are also sealed with AES-256-GCM inside the message, so
// they stay ciphertext through TLS-terminating proxies, brokers, queues,
// logs and dumps, end to end: only services that hold the field's keyset
// can read them. A SECRET field must be a string or bytes field, alone,
// repeated, in a oneof or as the value type of a map; [Validate] reports a
// SECRET mark on any other type, and sealing such a message fails. Map keys
// are never sealed nor redacted, whatever the mark on the map: keep
// sensitive data out of map keys. Extension fields are not walked: marks on
// extensions have no effect.
//
// # Envelopes
//
// A sealed string field holds "moat:v1:" followed by the base64url (no
// padding) of the Tink ciphertext; a sealed bytes field holds the bytes
// 0x00 'm' 'o' 'a' 't' 0x01 followed by the Tink ciphertext. The Tink
// ciphertext starts with the id of the key that sealed it. The associated
// data of each value is "moat.fields.v1|<keyset>|<message full name>|<field
// number>", so a ciphertext moved to another field or message type does not
// decrypt. Elements of one repeated field, and values of one map, share
// their associated data: reordering them, or swapping two map values, is
// not detected. Empty values stay empty, so whether a SECRET is empty shows;
// the length of a sealed value shows the length of its plaintext.
//
// Sealing a well-formed envelope leaves it unchanged; any other value,
// including one that merely starts like an envelope, is sealed. A value
// that does not start with the envelope prefix arrived in clear: Unseal
// accepts it, unless [WithRequireSealed] is set. A clear value that starts
// with the prefix ("moat:" for strings, 0x00 "moat" for bytes) cannot be
// told from a damaged envelope and is refused.
//
// # Keysets
//
// A [Keyset] is a Tink keyset of AES-256-GCM keys: one primary key seals,
// every enabled key unseals, so keys rotate without a flag day
// ([Keyset.Rotate] adds a primary key; [Keyset.WithoutKey] drops an old
// one). A [Keyring] holds keysets by name; a field's option key selects
// one, and an empty key selects [DefaultKeyset].
//
// [LoadKeyring] reads keysets from files in Tink's JSON format and reloads
// a file as soon as it changes (checked every [DefaultReloadInterval]);
// a file that fails to load is reported through [WithKeyringHook] and the
// last good keyset stays. Cleartext keyset files are for development only:
// anyone who reads one reads every field it seals. In production, encrypt
// keyset files with a master AEAD, such as a KMS key, and pass it with
// [WithMasterKey]; a cleartext file is then refused. [NewKeyset],
// [Keyset.Rotate] and [WriteKeysetFile] create and update keyset files.
//
// # Forward or refuse
//
// A service that lacks a field's keyset cannot read the field. By default
// ([Forward]) Unseal leaves such a value sealed, so a relay passes it on
// unchanged; with [WithMissingKeyset]([Refuse]) Unseal fails instead. Seal
// never sends a clear SECRET value for want of a keyset: it fails.
//
// # gRPC
//
// [Sealer] provides client and server interceptors, unary and streaming.
// A client seals a copy of each request (the caller's message is not
// changed) and unseals each response; a server unseals each request before
// its handler runs and seals a copy of each response. Failures end the
// call with a status error that names the message type, the field number
// and the keyset, never a value:
//
//   - InvalidArgument: a request field the server received is malformed,
//     cannot be decrypted, or arrived in clear while sealing is required;
//   - DataLoss: the same, for a response field the client received;
//   - FailedPrecondition: a key id or keyset is unknown here (keysets out
//     of step, or [Refuse]);
//   - Internal: a SECRET mark on a type that cannot hold ciphertext, or an
//     encryption failure.
//
// [CallLogger] logs calls through go-grpc-middleware's logging
// interceptors to a *slog.Logger: method, peer identity, code, latency,
// metadata with sensitive keys redacted ([SensitiveMetadataKey]) and, on
// request, payloads in redacted form only ([Redact]).
//
// A message type with no sensitive field at any depth costs one cached
// lookup and no allocation in [Sealer.Seal], [Sealer.Unseal] and [Redact].
// Plans are cached per message descriptor for the life of the process.
package fields
