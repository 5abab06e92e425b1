// Package auth is the example auth service: it checks users' passwords,
// issues session tokens and validates them for other services.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/services"
)

// SessionLifetime is how long a session token stays valid.
const SessionLifetime = time.Hour

// Handler implements authv1.AuthServiceServer. It is safe for concurrent
// use.
type Handler struct {
	authv1.UnimplementedAuthServiceServer

	users map[string]account // by username
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]session // by token
}

type account struct {
	userID string
	digest [sha256.Size]byte
}

type session struct {
	userID  string
	expires time.Time
}

// New returns a handler that knows users.
func New(users []services.User) *Handler {
	h := &Handler{users: map[string]account{}, sessions: map[string]session{}, now: time.Now}
	for _, u := range users {
		h.users[u.Username] = account{userID: u.UserID, digest: sha256.Sum256([]byte(u.Password))}
	}
	return h
}

// Login checks the password and returns a new session token.
func (h *Handler) Login(_ context.Context, req *authv1.LoginRequest) (*authv1.LoginResponse, error) {
	acc, ok := h.users[req.GetUsername()]
	got := sha256.Sum256([]byte(req.GetPassword()))
	if !ok || subtle.ConstantTimeCompare(got[:], acc.digest[:]) != 1 {
		return nil, status.Error(codes.Unauthenticated, "auth: unknown user or wrong password")
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	expires := h.now().Add(SessionLifetime)

	h.mu.Lock()
	h.sessions[token] = session{userID: acc.userID, expires: expires}
	h.mu.Unlock()
	return &authv1.LoginResponse{SessionToken: token, UserId: acc.userID, ExpiresUnix: expires.Unix()}, nil
}

// Validate reports whether a token is a live session.
func (h *Handler) Validate(_ context.Context, req *authv1.ValidateRequest) (*authv1.ValidateResponse, error) {
	h.mu.Lock()
	s, ok := h.sessions[req.GetSessionToken()]
	if ok && h.now().After(s.expires) {
		delete(h.sessions, req.GetSessionToken())
		ok = false
	}
	h.mu.Unlock()
	if !ok {
		return &authv1.ValidateResponse{Valid: false}, nil
	}
	return &authv1.ValidateResponse{Valid: true, UserId: s.userID}, nil
}
