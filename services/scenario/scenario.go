// Package scenario is the threat model's scenario played against the
// example services: every synthetic user logs in with auth, fetches their
// profile from profile (which checks the session with auth), then updates
// their contact details (profile checks the session again and publishes a
// ProfileUpdated event).
package scenario

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/services"
)

// Result summarises a run.
type Result struct {
	// Calls counts the calls made by the caller (login, profile fetch and
	// contact update per user); the last two make one more call each, from
	// profile to auth.
	Calls int
	// Updates counts the successful contact updates, each of which
	// publishes one event.
	Updates int
	Errors  []error
	// Latencies of successful calls, in the order made.
	Latencies []time.Duration
	// Tokens are the session tokens issued during the run, so that checks
	// can look for them where they must not be.
	Tokens []string
}

// Percentile returns the p-th percentile (0 < p <= 100) of the latencies.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.Latencies)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Run plays the scenario rounds times for every user and checks every
// answer: a wrong or missing profile counts as an error.
func Run(ctx context.Context, authConn, profileConn grpc.ClientConnInterface, users []services.User, rounds int) *Result {
	authc := authv1.NewAuthServiceClient(authConn)
	profc := profilev1.NewProfileServiceClient(profileConn)
	r := &Result{}
	timed := func(call func() error) error {
		start := time.Now()
		err := call()
		r.Calls++
		if err == nil {
			r.Latencies = append(r.Latencies, time.Since(start))
		} else {
			r.Errors = append(r.Errors, err)
		}
		return err
	}
	for range rounds {
		for _, u := range users {
			var login *authv1.LoginResponse
			err := timed(func() (err error) {
				login, err = authc.Login(ctx, &authv1.LoginRequest{Username: u.Username, Password: u.Password})
				if err != nil {
					return fmt.Errorf("login %s: %w", u.Username, err)
				}
				return nil
			})
			if err != nil {
				continue
			}
			r.Tokens = append(r.Tokens, login.GetSessionToken())
			_ = timed(func() error {
				resp, err := profc.GetProfile(ctx, &profilev1.GetProfileRequest{SessionToken: login.GetSessionToken()})
				if err != nil {
					return fmt.Errorf("profile of %s: %w", u.Username, err)
				}
				if !proto.Equal(resp.GetProfile(), Expected(u)) {
					return fmt.Errorf("profile of %s: wrong profile returned", u.Username)
				}
				return nil
			})
			// The same details again, so that every round expects the same
			// profile; the update is announced all the same.
			err = timed(func() error {
				resp, err := profc.UpdateContact(ctx, &profilev1.UpdateContactRequest{
					SessionToken: login.GetSessionToken(), Phone: u.Phone, Email: u.Email})
				if err != nil {
					return fmt.Errorf("update of %s: %w", u.Username, err)
				}
				if !proto.Equal(resp.GetProfile(), Expected(u)) {
					return fmt.Errorf("update of %s: wrong profile returned", u.Username)
				}
				return nil
			})
			if err == nil {
				r.Updates++
			}
		}
	}
	return r
}

// Expected returns the profile the profile service must return for u.
func Expected(u services.User) *profilev1.Profile { return u.Profile() }
