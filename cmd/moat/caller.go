package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/security/fields"
)

// callerConfig is how a command that talks to services and Consul finds
// its workload certificate and the agent.
type callerConfig struct {
	certsDir string
	as       string
	consul   string
	keysDir  string
	timeout  time.Duration
	asJSON   bool
}

// addCallerFlags registers the flags shared by call, services and
// describe. Defaults come from the variables 'moat dev' prints.
func addCallerFlags(cmd *cobra.Command, c *callerConfig) {
	certs := os.Getenv(rpc.EnvCertsDir)
	if certs == "" {
		certs = filepath.Join(".dev", "certs")
	}
	cmd.Flags().StringVar(&c.certsDir, "certs-dir", certs,
		"folder holding <as>.pem, <as>-key.pem and bundle.pem (default $"+rpc.EnvCertsDir+")")
	cmd.Flags().StringVar(&c.as, "as", "caller",
		"workload identity to present; $"+rpc.EnvCert+", $"+rpc.EnvKey+" and $"+rpc.EnvBundle+" override it")
	cmd.Flags().StringVar(&c.consul, "consul", os.Getenv(rpc.EnvConsulAddr),
		"host:port of Consul's HTTPS API (default $"+rpc.EnvConsulAddr+")")
	cmd.Flags().DurationVar(&c.timeout, "timeout", 30*time.Second, "how long the whole command may take")
	cmd.Flags().StringVar(&c.keysDir, "keys", os.Getenv(rpc.EnvKeysetsDir),
		"folder of field encryption keysets, to seal and open SECRET fields (default $"+rpc.EnvKeysetsDir+")")
}

// keyring loads the caller's keysets; without a folder it returns nil, and
// calls whose requests carry SECRET fields are refused.
func (c *callerConfig) keyring() (*fields.Keyring, error) {
	if c.keysDir == "" {
		return nil, nil
	}
	files, err := fields.KeysetFiles(c.keysDir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no keyset files in %s; create one with 'moat keys init --dir %s'",
			c.keysDir, c.keysDir)
	}
	return fields.LoadKeyring(files, fields.WithReloadInterval(0))
}

// addJSONFlag registers --json on commands that print tables.
func addJSONFlag(cmd *cobra.Command, c *callerConfig) {
	cmd.Flags().BoolVar(&c.asJSON, "json", false, "print JSON for scripts instead of tables")
}

// identity loads the caller's workload certificate. Without one it fails
// with the command that creates one: moat never calls without mutual TLS.
func (c *callerConfig) identity() (*security.Identity, error) {
	files := security.FilesFor(c.certsDir, c.as)
	fromEnv := false
	for _, v := range []struct {
		dst *string
		env string
	}{{&files.Cert, rpc.EnvCert}, {&files.Key, rpc.EnvKey}, {&files.Bundle, rpc.EnvBundle}} {
		if s := os.Getenv(v.env); s != "" {
			*v.dst, fromEnv = s, true
		}
	}
	var opts []security.LoadOption
	if td := os.Getenv(rpc.EnvTrustDomain); td != "" {
		opts = append(opts, security.WithTrustDomain(td))
	}
	id, err := security.LoadIdentity(files.Cert, files.Key, files.Bundle, opts...)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, security.ErrMissingFile) && !fromEnv:
		return nil, fmt.Errorf("no workload certificate for %q in %s: moat calls only over mutual TLS; "+
			"create one with 'moat certs issue %s --dir %s' (or start 'moat dev'), pass --as with "+
			"another identity, or set %s, %s and %s", c.as, c.certsDir, c.as, c.certsDir,
			rpc.EnvCert, rpc.EnvKey, rpc.EnvBundle)
	case errors.Is(err, security.ErrMissingFile):
		return nil, fmt.Errorf("workload certificate from %s/%s/%s: %w; create one with "+
			"'moat certs issue %s'", rpc.EnvCert, rpc.EnvKey, rpc.EnvBundle, err, c.as)
	}
	return nil, fmt.Errorf("workload certificate for %q: %w", c.as, err)
}

// registry connects to Consul over mutual TLS with the caller's identity.
func (c *callerConfig) registry(id *security.Identity) (*registry.Consul, error) {
	if c.consul == "" {
		return nil, fmt.Errorf("no Consul address: pass --consul or set %s ('moat dev' prints it)",
			rpc.EnvConsulAddr)
	}
	token := os.Getenv(rpc.EnvConsulToken)
	if path := os.Getenv(rpc.EnvConsulTokenFile); token == "" && path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", rpc.EnvConsulTokenFile, err)
		}
		token = strings.TrimSpace(string(b))
	}
	return registry.NewConsul(
		registry.WithConsulAddress(c.consul),
		registry.WithConsulIdentity(id),
		registry.WithConsulToken(token),
	)
}
