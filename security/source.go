package security

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// FileSource is a [Source] that reloads a workload identity when its
// files change: certificate, key or trust bundle, whether replaced by an
// atomic rename or rewritten in place. Material that fails any check of
// [LoadIdentity] (half-written, mismatched pair, expired, wrong identity,
// garbage) is ignored with an [EventRotationFailed] event and the last good
// identity stays in use. New handshakes use new material at once;
// established connections are not disturbed. FileSource is safe for
// concurrent use; Close stops the watch.
type FileSource struct {
	files    IdentityFiles
	opts     []LoadOption
	interval time.Duration
	warnAt   float64
	audit    AuditHook
	service  string

	cur      atomic.Pointer[Identity]
	mu       sync.Mutex
	lastSum  [sha256.Size]byte
	warned   string
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// WatchOption configures [WatchIdentity].
type WatchOption func(*FileSource)

// WithPollInterval sets how often the files are checked; default 1s.
func WithPollInterval(d time.Duration) WatchOption {
	return func(s *FileSource) { s.interval = d }
}

// WithAuditHook receives rotation and expiry events.
func WithAuditHook(h AuditHook) WatchOption {
	return func(s *FileSource) { s.audit = h }
}

// WithLoadOptions applies [LoadOption]s to every load.
func WithLoadOptions(opts ...LoadOption) WatchOption {
	return func(s *FileSource) { s.opts = append(s.opts, opts...) }
}

// WithExpiryWarning emits [EventExpiring] once per certificate when less
// than fraction (0 to 1) of its lifetime is left; default 1/3.
func WithExpiryWarning(fraction float64) WatchOption {
	return func(s *FileSource) { s.warnAt = fraction }
}

// WatchIdentity loads the identity in files and keeps reloading it. The
// first load must succeed. Later loads must also name the same service as
// the first: a file swapped for another workload's identity is refused.
func WatchIdentity(files IdentityFiles, opts ...WatchOption) (*FileSource, error) {
	s := &FileSource{
		files: files, interval: time.Second, warnAt: 1.0 / 3,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.interval <= 0 {
		return nil, errors.New("security: poll interval must be positive")
	}
	id, sum, err := s.load()
	if err != nil {
		return nil, err
	}
	s.service = id.Service()
	s.cur.Store(id)
	s.lastSum = sum
	go s.watch()
	return s, nil
}

// Current returns the newest good identity.
func (s *FileSource) Current() *Identity { return s.cur.Load() }

// Close stops watching the files.
func (s *FileSource) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Reload checks the files now, as the watch does on each tick, and returns
// the refusal when the new material is bad.
func (s *FileSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *FileSource) watch() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Reload()
		}
	}
}

func (s *FileSource) reloadLocked() error {
	sum, err := s.checksum()
	if err != nil {
		// A file caught mid-rename is missing for an instant; the next
		// tick sees the new one.
		return err
	}
	if sum != s.lastSum {
		s.lastSum = sum
		id, _, err := s.load()
		if err == nil && id.Service() != s.service {
			err = refuse(ReasonWrongIdentity, s.files.Cert,
				"new certificate is for %q but this workload is %q; issue it with 'moat certs issue %s'",
				id.ID(), s.service, s.service)
		}
		if err != nil {
			s.audit.emit(Event{Kind: EventRotationFailed, Reason: reasonOr(err, ReasonMalformed),
				Subject: s.files.Cert, Err: err, NotAfter: s.Current().Leaf().NotAfter})
			return err
		}
		s.cur.Store(id)
		s.audit.emit(Event{Kind: EventRotated, Peer: id.ID().String(), Subject: s.files.Cert,
			NotAfter: id.Leaf().NotAfter})
	}
	s.checkExpiry()
	return nil
}

func (s *FileSource) checkExpiry() {
	leaf := s.Current().Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	left := time.Until(leaf.NotAfter)
	serial := leaf.SerialNumber.String()
	if float64(left) < s.warnAt*float64(life) && s.warned != serial {
		s.warned = serial
		s.audit.emit(Event{Kind: EventExpiring, Peer: s.Current().ID().String(),
			Subject: s.files.Cert, NotAfter: leaf.NotAfter})
	}
}

func (s *FileSource) checksum() ([sha256.Size]byte, error) {
	var all bytes.Buffer
	for _, p := range []string{s.files.Cert, s.files.Key, s.files.Bundle} {
		b, err := os.ReadFile(p)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		all.Write(b)
		all.WriteByte(0)
	}
	return sha256.Sum256(all.Bytes()), nil
}

func (s *FileSource) load() (*Identity, [sha256.Size]byte, error) {
	sum, err := s.checksum()
	if err != nil {
		// Let LoadIdentity produce the precise missing-file error.
		_, lerr := LoadIdentity(s.files.Cert, s.files.Key, s.files.Bundle, s.opts...)
		if lerr == nil {
			lerr = err
		}
		return nil, sum, lerr
	}
	id, err := LoadIdentity(s.files.Cert, s.files.Key, s.files.Bundle, s.opts...)
	return id, sum, err
}

func reasonOr(err error, def Reason) Reason {
	if r := ReasonOf(err); r != "" {
		return r
	}
	return def
}
