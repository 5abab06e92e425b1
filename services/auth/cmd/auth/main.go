// Command auth runs the example auth service with the identity, registry
// and address given by the environment variables 'moat dev' prints.
package main

import (
	"context"
	"log/slog"
	"os"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/services"
	"github.com/moatrpc/moat/services/auth"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("app", "auth")
	users, err := services.Users()
	if err != nil {
		logger.Error("load users", "err", err)
		os.Exit(1)
	}
	svc, err := rpc.NewService("auth", rpc.WithLogger(logger), rpc.WithVersion("1.0.0"),
		rpc.WithContextMetadata(), rpc.WithEnv(),
		// Every call is logged with its messages; PII and SECRET fields
		// appear only as redaction markers.
		rpc.WithCallLog(fields.WithPayloads()),
		// Only profile may check sessions.
		rpc.WithPolicy(&security.Policy{Methods: map[string]security.Rule{
			authv1.AuthService_Validate_FullMethodName: {Allow: []string{"profile"}},
		}}))
	if err != nil {
		logger.Error("start", "err", err)
		os.Exit(1)
	}
	authv1.RegisterAuthServiceHandler(svc.Server(), auth.New(users))
	if err := svc.Run(context.Background()); err != nil {
		logger.Error("run", "err", err)
		os.Exit(1)
	}
}
