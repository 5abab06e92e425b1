package security

import "time"

// EventKind names an audit event.
type EventKind string

// Kinds of audit events.
const (
	EventHandshakeRefused EventKind = "handshake_refused"
	EventAuthzDenied      EventKind = "authz_denied"
	EventRotated          EventKind = "rotated"
	EventRotationFailed   EventKind = "rotation_failed"
	EventRevoked          EventKind = "revoked_connection_closed"
	EventRevocationLoaded EventKind = "revocation_list_loaded"
	EventRevocationFailed EventKind = "revocation_list_failed"
	EventExpiring         EventKind = "certificate_expiring"
)

// Event is an audit event: something a security team wants recorded. It
// never carries key material or message contents.
type Event struct {
	Kind EventKind
	Time time.Time
	// Reason classifies refusals and failures.
	Reason Reason
	// Peer is the SPIFFE ID of the peer concerned, when known.
	Peer string
	// Remote is the peer's network address, when known.
	Remote string
	// Method is the full gRPC method of an authorization decision.
	Method string
	// Subject names the material concerned: a file, a serial number.
	Subject string
	// NotAfter is the expiry of the certificate concerned, when relevant.
	NotAfter time.Time
	Err      error
}

// AuditHook receives audit events. It must be safe for concurrent use and
// must not block.
type AuditHook func(Event)

func (h AuditHook) emit(e Event) {
	if h == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	h(e)
}
