package broker

import (
	"errors"
	"fmt"
)

// Errors returned by brokers. Each is wrapped with details; compare with
// [errors.Is].
var (
	// ErrNoIdentity is returned by [NewNATS] and [StartEmbedded] without a
	// workload identity.
	ErrNoIdentity = errors.New("broker: no workload identity")
	// ErrNoURL is returned by [NewNATS] without a NATS server URL, or with
	// one it cannot use.
	ErrNoURL = errors.New("broker: no usable NATS server URL")
	// ErrNotConnected is returned by Publish and Subscribe before Connect
	// or after Disconnect.
	ErrNotConnected = errors.New("broker: not connected")
	// ErrInvalidTopic is returned for a topic that is empty or holds
	// characters outside the topic alphabet (see the package doc).
	ErrInvalidTopic = errors.New("broker: invalid topic")
	// ErrInvalidOption is returned for an option value or a combination of
	// options that cannot work.
	ErrInvalidOption = errors.New("broker: invalid option")
	// ErrNotPersisted is returned by Publish with [WithPersistence] when the
	// stream did not acknowledge the message before the context ended.
	ErrNotPersisted = errors.New("broker: message not acknowledged by the stream")
	// ErrWrongMessageType is returned by [Decode] when the message carries
	// another protobuf type than the one asked for.
	ErrWrongMessageType = errors.New("broker: wrong message type")
)

// Reason classifies why a received event was refused. Reasons are stable
// strings, fit for metrics labels and audit events.
type Reason string

// Reasons for refusing an event. None of the refused events reaches a
// handler.
const (
	// ReasonUnsigned: the event carries no moat envelope, or an envelope
	// without publisher, certificate chain or signature.
	ReasonUnsigned Reason = "unsigned"
	// ReasonMalformed: the envelope does not parse.
	ReasonMalformed Reason = "malformed"
	// ReasonUntrustedPublisher: the publisher's certificate does not chain
	// to the trust bundle, belongs to another trust domain, lacks the
	// clientAuth usage, has a weak key, or was not valid when the event was
	// signed.
	ReasonUntrustedPublisher Reason = "untrusted_publisher"
	// ReasonWrongPublisher: the publisher named in the envelope is not
	// the identity in its certificate.
	ReasonWrongPublisher Reason = "wrong_publisher"
	// ReasonBadSignature: the signature does not verify over the topic,
	// message id, timestamp, publisher, header and body.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonExpired: the event was signed longer ago than the
	// subscription's maximum age, or before the oldest event the replay
	// cache still remembers.
	ReasonExpired Reason = "expired"
	// ReasonFutureTimestamp: the event was signed further in the future
	// than the allowed clock skew.
	ReasonFutureTimestamp Reason = "future_timestamp"
	// ReasonReplayed: an event with the same message id was already
	// delivered to this subscription.
	ReasonReplayed Reason = "replayed"
	// ReasonPublisherNotAllowed: the publisher is verified but is not one
	// of the services the subscription accepts ([WithPublishers]).
	ReasonPublisherNotAllowed Reason = "publisher_not_allowed"
)

// RefusedEvent describes an event a subscription refused. It is passed to
// the hook set with [WithRefusalHook]; the event's body is never included.
type RefusedEvent struct {
	// Topic is the subject the event arrived on.
	Topic string
	// Subscription is the topic pattern of the refusing subscription.
	Subscription string
	// Queue and Durable name the subscription's queue group or durable
	// consumer, when it has one.
	Queue, Durable string
	// Reason says why the event was refused.
	Reason Reason
	// Publisher is the SPIFFE ID the event claims, empty when unreadable.
	// It is verified only when Reason is [ReasonExpired],
	// [ReasonFutureTimestamp], [ReasonReplayed] or
	// [ReasonPublisherNotAllowed]; otherwise anyone may have written it.
	Publisher string
	// MessageID is the event's message id in hex, empty when unreadable.
	MessageID string
	// Err explains the refusal; it is a [*RefusalError].
	Err error
}

// RefusalError is the error carried by a [RefusedEvent].
type RefusalError struct {
	Reason Reason
	// Detail is the human explanation.
	Detail string
	Err    error
}

func (e *RefusalError) Error() string {
	msg := "broker: event refused (" + string(e.Reason) + "): " + e.Detail
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *RefusalError) Unwrap() error { return e.Err }

func refuse(reason Reason, format string, args ...any) *RefusalError {
	return &RefusalError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the [Reason] carried by err, or "" when err is not a
// refusal.
func ReasonOf(err error) Reason {
	var e *RefusalError
	if errors.As(err, &e) && e != nil {
		return e.Reason
	}
	return ""
}
