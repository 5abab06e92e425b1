// Package e2e holds the end-to-end tests of moat: the example services run
// as separate processes against a real Consul agent over mutual TLS, with
// recording relays on the wire between them.
package e2e
