// Package profile is the example profile service: it returns a user's
// profile to the holder of a valid session, which it checks by calling the
// auth service.
package profile

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/services"
)

// Handler implements profilev1.ProfileServiceServer.
type Handler struct {
	profilev1.UnimplementedProfileServiceServer

	auth     authv1.AuthServiceClient
	profiles map[string]*profilev1.Profile
}

// New returns a handler serving the profiles of users, checking sessions
// with the auth service reached through authConn.
func New(users []services.User, authConn grpc.ClientConnInterface) *Handler {
	h := &Handler{auth: authv1.NewAuthServiceClient(authConn), profiles: map[string]*profilev1.Profile{}}
	for _, u := range users {
		h.profiles[u.UserID] = &profilev1.Profile{
			UserId: u.UserID,
			Name:   u.Name,
			Address: &profilev1.Address{
				Street: u.Address.Street, City: u.Address.City,
				PostalCode: u.Address.PostalCode, Country: u.Address.Country,
			},
			Phone: u.Phone,
			Email: u.Email,
		}
	}
	return h
}

// GetProfile validates the session with auth and returns its user's profile.
func (h *Handler) GetProfile(ctx context.Context, req *profilev1.GetProfileRequest) (*profilev1.GetProfileResponse, error) {
	if req.GetSessionToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "profile: session token is required")
	}
	v, err := h.auth.Validate(ctx, &authv1.ValidateRequest{SessionToken: req.GetSessionToken()})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "profile: cannot validate session: %v", status.Code(err))
	}
	if !v.GetValid() {
		return nil, status.Error(codes.Unauthenticated, "profile: session is not valid")
	}
	p, ok := h.profiles[v.GetUserId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "profile: no profile for this user")
	}
	return &profilev1.GetProfileResponse{Profile: p}, nil
}
