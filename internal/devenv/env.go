package devenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moatrpc/moat/broker"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

// DefaultTrustDomain is the trust domain of the dev CA.
const DefaultTrustDomain = "moat.local"

// Env is a running development environment: a dev CA with workload
// certificates and a Consul agent that requires them.
type Env struct {
	Dir      string
	CertsDir string
	// KeysDir holds the field encryption keysets (<name>.json).
	KeysDir string
	CA      *security.CA
	Consul  *Consul
	// NATS is the embedded NATS server, over mutual TLS.
	NATS *broker.Embedded

	cfg    EnvConfig
	natsID *security.FileSource
}

// EnvConfig says how to set up an [Env].
type EnvConfig struct {
	// Dir holds certs/ and consul/; it is created when missing.
	Dir string
	// TrustDomain of a new CA; an existing CA in Dir/certs is reused.
	TrustDomain string
	// Services get a workload certificate each, renewed on every start.
	Services []string
	// CertLifetime of the workload certificates; default 24h.
	CertLifetime time.Duration
	// ConsulBinary overrides [FindConsul].
	ConsulBinary string
	// ACLMasterToken turns Consul ACLs on; see [ConsulConfig].
	ACLMasterToken string
}

// Start creates or reuses the dev CA, issues certificates and starts
// Consul.
func Start(ctx context.Context, cfg EnvConfig) (*Env, error) {
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = DefaultTrustDomain
	}
	// Find Consul before writing anything.
	if cfg.ConsulBinary == "" {
		bin, err := FindConsul()
		if err != nil {
			return nil, err
		}
		cfg.ConsulBinary = bin
	}
	certs := filepath.Join(cfg.Dir, "certs")
	ca, err := security.LoadCA(certs)
	if errors.Is(err, security.ErrMissingFile) {
		if ca, err = security.NewCA(cfg.TrustDomain); err == nil {
			err = ca.Save(certs)
		}
	}
	if err != nil {
		return nil, err
	}
	if ca.TrustDomain().Name() != cfg.TrustDomain {
		return nil, fmt.Errorf("devenv: %s holds a CA for trust domain %q, not %q; use another folder "+
			"or remove it to start over", certs, ca.TrustDomain().Name(), cfg.TrustDomain)
	}
	if cfg.CertLifetime <= 0 {
		cfg.CertLifetime = security.DefaultLeafLifetime
	}
	for _, s := range cfg.Services {
		if _, err := ca.IssueFiles(certs, s, security.WithLifetime(cfg.CertLifetime)); err != nil {
			return nil, err
		}
	}
	// An empty revocation list, so that services can be started with it
	// and 'moat certs revoke' takes effect at once.
	if _, err := ca.Revoke(certs, security.DefaultCRLLifetime); err != nil {
		return nil, err
	}
	keys := filepath.Join(cfg.Dir, "keys")
	if err := ensureKeyset(keys, fields.DefaultKeyset); err != nil {
		return nil, err
	}
	consul, err := StartConsul(ctx, ConsulConfig{
		Binary:         cfg.ConsulBinary,
		Dir:            filepath.Join(cfg.Dir, "consul"),
		CA:             ca,
		ACLMasterToken: cfg.ACLMasterToken,
	})
	if err != nil {
		return nil, err
	}
	natsFiles, err := ca.IssueFiles(certs, "nats", security.WithLifetime(7*24*time.Hour))
	if err != nil {
		consul.Stop()
		return nil, err
	}
	natsID, err := security.WatchIdentity(natsFiles)
	if err != nil {
		consul.Stop()
		return nil, err
	}
	natsOpts := []broker.EmbeddedOption{broker.WithStoreDir(filepath.Join(cfg.Dir, "nats"))}
	if p := previousPort(filepath.Join(cfg.Dir, "nats")); p != 0 && portFree(p) {
		natsOpts = append(natsOpts, broker.WithPort(p))
	}
	nats, err := broker.StartEmbedded(ctx, natsID, natsOpts...)
	if err != nil {
		natsID.Close()
		consul.Stop()
		return nil, err
	}
	_ = os.WriteFile(filepath.Join(cfg.Dir, "nats", "https-port"), []byte(strconv.Itoa(nats.Port())), 0o600)
	return &Env{Dir: cfg.Dir, CertsDir: certs, KeysDir: keys, CA: ca, Consul: consul, NATS: nats,
		cfg: cfg, natsID: natsID}, nil
}

// Renew reissues the services' certificates, and refreshes the revocation
// list, at two thirds of the certificates' lifetime until ctx ends; services reading their identity from files pick
// them up without a restart. done is called after each renewal.
func (e *Env) Renew(ctx context.Context, done func(service string, notAfter time.Time, err error)) {
	every := e.cfg.CertLifetime * 2 / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := e.CA.Revoke(e.CertsDir, security.DefaultCRLLifetime); err != nil {
			done("revocation list", time.Time{}, err)
		}
		for _, s := range e.cfg.Services {
			files, err := e.CA.IssueFiles(e.CertsDir, s, security.WithLifetime(e.cfg.CertLifetime))
			var notAfter time.Time
			if err == nil {
				if id, lerr := security.LoadIdentity(files.Cert, files.Key, files.Bundle); lerr == nil {
					notAfter = id.Leaf().NotAfter
				}
			}
			done(s, notAfter, err)
		}
	}
}

// Vars returns the environment variables a service needs to join the
// environment, as read by rpc.WithEnv.
func (e *Env) Vars() map[string]string {
	abs, err := filepath.Abs(e.CertsDir)
	if err != nil {
		abs = e.CertsDir
	}
	keys, err := filepath.Abs(e.KeysDir)
	if err != nil {
		keys = e.KeysDir
	}
	return map[string]string{
		"MOAT_CERTS_DIR":    abs,
		"MOAT_KEYSETS_DIR":  keys,
		"MOAT_CRL_FILE":     filepath.Join(abs, security.CRLFileName),
		"MOAT_CONSUL_ADDR":  e.Consul.Addr(),
		"MOAT_NATS_URL":     e.NATS.ClientURL(),
		"MOAT_TRUST_DOMAIN": e.CA.TrustDomain().Name(),
	}
}

// Environ returns Vars in os/exec's KEY=value form, sorted.
func (e *Env) Environ() []string {
	var out []string
	for k, v := range e.Vars() {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// WriteEnvFile writes Vars as shell exports to Dir/env and returns its path.
func (e *Env) WriteEnvFile() (string, error) {
	var b strings.Builder
	for _, kv := range e.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s=%q\n", k, v)
	}
	path := filepath.Join(e.Dir, "env")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("devenv: %w", err)
	}
	return path, nil
}

// Stop stops NATS and Consul.
func (e *Env) Stop() error {
	e.NATS.Shutdown()
	e.natsID.Close()
	return e.Consul.Stop()
}

// ensureKeyset creates a cleartext development keyset called name in dir
// unless one exists.
func ensureKeyset(dir, name string) error {
	path := filepath.Join(dir, name+".json")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	ks, err := fields.NewKeyset()
	if err != nil {
		return err
	}
	return fields.WriteKeysetFile(path, ks, nil)
}
