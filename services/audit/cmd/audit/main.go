// Command audit runs the example audit service with the identity, keysets,
// registry and broker given by the environment variables 'moat dev' prints.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/moatrpc/moat/broker"
	auditv1 "github.com/moatrpc/moat/proto/moat/example/audit/v1"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security/fields"
	"github.com/moatrpc/moat/services/audit"
	"github.com/moatrpc/moat/services/profile"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("app", "audit")
	svc, err := rpc.NewService("audit", rpc.WithLogger(logger), rpc.WithVersion("1.0.0"),
		rpc.WithEnv(), rpc.WithCallLog(fields.WithPayloads()))
	if err != nil {
		logger.Error("start", "err", err)
		os.Exit(1)
	}
	rec := audit.New(logger)
	// One audit node records each event; only profile may publish them.
	err = rpc.Subscribe(svc, profile.TopicUpdated, rec.Record,
		broker.WithQueue(audit.Queue), broker.WithPublishers("profile"))
	if err != nil {
		logger.Error("subscribe", "err", err)
		os.Exit(1)
	}
	auditv1.RegisterAuditServiceHandler(svc.Server(), rec)
	if err := svc.Run(context.Background()); err != nil {
		logger.Error("run", "err", err)
		os.Exit(1)
	}
}
