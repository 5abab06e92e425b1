// Command profile runs the example profile service with the identity,
// registry and address given by the environment variables 'moat dev'
// prints.
package main

import (
	"context"
	"log/slog"
	"os"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/services"
	"github.com/moatrpc/moat/services/profile"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("app", "profile")
	users, err := services.Users()
	if err != nil {
		logger.Error("load users", "err", err)
		os.Exit(1)
	}
	svc, err := rpc.NewService("profile", rpc.WithLogger(logger), rpc.WithVersion("1.0.0"),
		rpc.WithContextMetadata(), rpc.WithEnv(),
		// Every call is logged with its messages; PII and SECRET fields
		// appear only as redaction markers.
		rpc.WithCallLog(fields.WithPayloads()))
	if err != nil {
		logger.Error("start", "err", err)
		os.Exit(1)
	}
	// Profile calls auth by its registry name; the connection opens on
	// first use and accepts only a server proving it is "auth".
	authSvc := authv1.NewAuthService("auth", svc.Client())
	h := profile.New(users, authSvc)
	// With a broker (MOAT_NATS_URL), changes are published as events.
	if _, err := svc.Broker(); err == nil {
		h.SetPublisher(svc)
	}
	profilev1.RegisterProfileServiceHandler(svc.Server(), h)
	if err := svc.Run(context.Background()); err != nil {
		logger.Error("run", "err", err)
		os.Exit(1)
	}
}
