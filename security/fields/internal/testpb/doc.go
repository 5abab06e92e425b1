// Package testpb holds the protobuf messages that the tests of package
// fields seal, unseal and redact. It is not part of moat's API.
package testpb

//go:generate sh -c "cd ../../../.. && bin/buf lint --config security/fields/internal/testpb/buf.yaml security/fields/internal/testpb && bin/buf generate --config security/fields/internal/testpb/buf.yaml --template security/fields/internal/testpb/buf.gen.yaml security/fields/internal/testpb"
