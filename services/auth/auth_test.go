package auth

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/services"
)

func TestLoginAndValidate(t *testing.T) {
	t.Parallel()
	users := []services.User{{UserID: "u-1", Username: "ada", Password: "pw-ada"}}
	h := New(users)
	now := time.Unix(1_000_000, 0)
	h.now = func() time.Time { return now }
	ctx := context.Background()

	var ok authv1.LoginResponse
	if err := h.Login(ctx, &authv1.LoginRequest{Username: "ada", Password: "pw-ada"}, &ok); err != nil {
		t.Fatal(err)
	}
	if ok.GetUserId() != "u-1" || ok.GetSessionToken() == "" ||
		ok.GetExpiresUnix() != now.Add(SessionLifetime).Unix() {
		t.Fatalf("login answered %v", &ok)
	}

	logins := []struct {
		name, user, password string
	}{
		{"wrong password", "ada", "nope"},
		{"unknown user", "bram", "pw-ada"},
		{"empty", "", ""},
	}
	for _, tt := range logins {
		t.Run(tt.name, func(t *testing.T) {
			var rsp authv1.LoginResponse
			err := h.Login(ctx, &authv1.LoginRequest{Username: tt.user, Password: tt.password}, &rsp)
			if status.Code(err) != codes.Unauthenticated || rsp.GetSessionToken() != "" {
				t.Fatalf("err = %v, response %v", err, &rsp)
			}
		})
	}

	validations := []struct {
		name  string
		token string
		after time.Duration
		valid bool
	}{
		{"live session", ok.GetSessionToken(), 0, true},
		{"unknown token", "not-a-token", 0, false},
		{"expired session", ok.GetSessionToken(), SessionLifetime + time.Second, false},
		{"expired session is forgotten", ok.GetSessionToken(), 0, false},
	}
	for _, tt := range validations {
		now = now.Add(tt.after)
		var rsp authv1.ValidateResponse
		if err := h.Validate(ctx, &authv1.ValidateRequest{SessionToken: tt.token}, &rsp); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if rsp.GetValid() != tt.valid || (tt.valid && rsp.GetUserId() != "u-1") {
			t.Fatalf("%s: validate answered %v", tt.name, &rsp)
		}
	}
}
