// Package audit is the example audit service: it records the
// ProfileUpdated events the profile service publishes, with the verified
// identity of their publisher, and reports what it recorded.
package audit

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/moatrpc/moat/broker"
	auditv1 "github.com/moatrpc/moat/proto/moat/example/audit/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
)

// Queue is the queue group of the audit nodes: each event is recorded by
// exactly one of them.
const Queue = "audit"

// Recorder records profile changes. It is safe for concurrent use.
type Recorder struct {
	logger *slog.Logger

	mu         sync.Mutex
	events     int64
	users      map[string]bool
	publishers map[string]bool
}

// New returns a recorder that logs each event to logger (redact what it
// logs: events carry PII).
func New(logger *slog.Logger) *Recorder {
	return &Recorder{logger: logger, users: map[string]bool{}, publishers: map[string]bool{}}
}

// Record is the subscription handler for ProfileUpdated events.
func (r *Recorder) Record(ctx context.Context, ev *profilev1.ProfileUpdated) error {
	publisher, _ := broker.PublisherFromContext(ctx)
	r.mu.Lock()
	r.events++
	r.users[ev.GetUserId()] = true
	r.publishers[publisher.String()] = true
	r.mu.Unlock()
	// Only public fields are logged; the session that made the change is
	// known here (its token is opened with the keyset) but not written out.
	r.logger.Info("audit: profile updated", "user_id", ev.GetUserId(),
		"changed", ev.GetChangedFields(), "publisher", publisher.String(),
		"session_known", ev.GetSessionToken() != "")
	return nil
}

// Summary implements auditv1.AuditServiceHandler.
func (r *Recorder) Summary(_ context.Context, _ *auditv1.SummaryRequest, rsp *auditv1.SummaryResponse) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rsp.Events = r.events
	rsp.Users = int64(len(r.users))
	for p := range r.publishers {
		rsp.Publishers = append(rsp.Publishers, p)
	}
	slices.Sort(rsp.Publishers)
	return nil
}
