package rpc

import "errors"

// Errors returned by [NewService] and the [Service] lifecycle.
var (
	// ErrNoIdentity is returned by NewService without a workload identity.
	ErrNoIdentity = errors.New("rpc: no workload identity")
	// ErrIdentityMismatch is returned by NewService when the identity
	// names another service.
	ErrIdentityMismatch = errors.New("rpc: identity does not match service")
	// ErrAlreadyStarted is returned by Start on a started or stopped
	// service.
	ErrAlreadyStarted = errors.New("rpc: service already started")
	// ErrNoKeyset is returned by Start when the service serves methods
	// whose messages carry SECRET fields and has no keyset to seal them.
	ErrNoKeyset = errors.New("rpc: no keyset for SECRET fields")
	// ErrStopped is returned by Client calls after the service stopped.
	ErrStopped = errors.New("rpc: service stopped")
)
