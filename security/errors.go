package security

import (
	"errors"
	"fmt"
)

// Reason classifies why an identity or a peer was refused. Reasons are
// stable strings, fit for metrics labels and audit events.
type Reason string

// Reasons for refusing an identity or a peer.
const (
	ReasonMissingFile      Reason = "missing_file"
	ReasonMalformed        Reason = "malformed"
	ReasonKeyMismatch      Reason = "key_mismatch"
	ReasonExpired          Reason = "expired"
	ReasonNotYetValid      Reason = "not_yet_valid"
	ReasonCAAsLeaf         Reason = "ca_as_leaf"
	ReasonNoSPIFFEID       Reason = "no_spiffe_id"
	ReasonBadSPIFFEID      Reason = "malformed_spiffe_id"
	ReasonWrongTrustDomain Reason = "wrong_trust_domain"
	ReasonWeakKey          Reason = "weak_key"
	ReasonMissingEKU       Reason = "missing_eku"
	ReasonUntrusted        Reason = "untrusted"
	ReasonWrongIdentity    Reason = "wrong_identity"
	ReasonNoCertificate    Reason = "no_certificate"
	ReasonEmptyBundle      Reason = "empty_bundle"
	ReasonTLSVersion       Reason = "tls_version"
	ReasonNotTLS           Reason = "not_tls"
	ReasonUnauthorized     Reason = "unauthorized"
	ReasonHandshake        Reason = "handshake_failed"
	ReasonTimeout          Reason = "handshake_timeout"
)

// Error is the error returned when an identity, a certificate or a peer is
// refused. Callers branch on Reason with [errors.As] or on the sentinel
// errors with [errors.Is]; the message names the problem and the fix.
type Error struct {
	Reason Reason
	// Subject names what was checked: a file path, a SPIFFE ID or "peer".
	Subject string
	// Detail is the human explanation, including the fix where there is one.
	Detail string
	// Peer is the SPIFFE ID a refused peer presented, when one was readable.
	Peer string
	Err  error
}

func (e *Error) Error() string {
	msg := "security: " + e.Subject + ": " + e.Detail
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's reason, so that
// errors.Is(err, security.ErrExpired) works for any subject.
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	return ok && s.reason == e.Reason
}

type sentinel struct{ reason Reason }

func (s *sentinel) Error() string { return "security: " + string(s.reason) }

// Sentinels matched by [errors.Is] against any [*Error] of the same reason.
var (
	ErrMissingFile      error = &sentinel{ReasonMissingFile}
	ErrMalformed        error = &sentinel{ReasonMalformed}
	ErrKeyMismatch      error = &sentinel{ReasonKeyMismatch}
	ErrExpired          error = &sentinel{ReasonExpired}
	ErrNotYetValid      error = &sentinel{ReasonNotYetValid}
	ErrCAAsLeaf         error = &sentinel{ReasonCAAsLeaf}
	ErrNoSPIFFEID       error = &sentinel{ReasonNoSPIFFEID}
	ErrBadSPIFFEID      error = &sentinel{ReasonBadSPIFFEID}
	ErrWrongTrustDomain error = &sentinel{ReasonWrongTrustDomain}
	ErrWeakKey          error = &sentinel{ReasonWeakKey}
	ErrMissingEKU       error = &sentinel{ReasonMissingEKU}
	ErrUntrusted        error = &sentinel{ReasonUntrusted}
	ErrWrongIdentity    error = &sentinel{ReasonWrongIdentity}
	ErrNoCertificate    error = &sentinel{ReasonNoCertificate}
	ErrEmptyBundle      error = &sentinel{ReasonEmptyBundle}
	ErrTLSVersion       error = &sentinel{ReasonTLSVersion}
	ErrUnauthorized     error = &sentinel{ReasonUnauthorized}
)

func refuse(reason Reason, subject, format string, args ...any) *Error {
	return &Error{Reason: reason, Subject: subject, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the [Reason] carried by err, or "" when err is not a
// security refusal.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
