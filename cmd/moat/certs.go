package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/internal/devenv"
	"github.com/moatrpc/moat/security"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create and inspect development certificates",
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", ".dev/certs", "folder of the dev CA and workload certificates")

	var td string
	var force bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a development CA for a trust domain",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := security.LoadCA(dir); err == nil && !force {
				return fmt.Errorf("a CA already exists in %s; pass --force to replace it "+
					"(every certificate it issued stops being trusted)", dir)
			}
			ca, err := security.NewCA(td)
			if err != nil {
				return err
			}
			if err := ca.Save(dir); err != nil {
				return err
			}
			if err := security.WriteBundle(dir, ca); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created CA for trust domain %s in %s\n", td, dir)
			fmt.Fprintf(cmd.OutOrStdout(), "trust bundle: %s\n", security.FilesFor(dir, "").Bundle)
			return nil
		},
	}
	initCmd.Flags().StringVar(&td, "trust-domain", devenv.DefaultTrustDomain, "SPIFFE trust domain")
	initCmd.Flags().BoolVar(&force, "force", false, "replace an existing CA")

	var lifetime time.Duration
	var keyType string
	issueCmd := &cobra.Command{
		Use:   "issue <service>...",
		Short: "Issue workload certificates signed by the development CA",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Every name is checked before anything is written.
			for _, svc := range args {
				if err := security.ValidateServiceName(svc); err != nil {
					return err
				}
			}
			ca, err := security.LoadCA(dir)
			if err != nil {
				return err
			}
			for _, svc := range args {
				files, err := ca.IssueFiles(dir, svc, security.WithLifetime(lifetime),
					security.WithKeyType(security.KeyType(keyType)))
				if err != nil {
					return err
				}
				id, _ := security.ServiceID(ca.TrustDomain().Name(), svc)
				fmt.Fprintf(cmd.OutOrStdout(), "issued %s (valid %s)\n  cert %s\n  key  %s\n",
					id, lifetime, files.Cert, files.Key)
			}
			return nil
		},
	}
	issueCmd.Flags().DurationVar(&lifetime, "lifetime", security.DefaultLeafLifetime, "validity of the certificates")
	issueCmd.Flags().StringVar(&keyType, "key-type", string(security.KeyECDSAP256),
		"key algorithm: ecdsa-p256, ed25519 or rsa-2048")

	inspectCmd := &cobra.Command{
		Use:   "inspect <file>",
		Short: "Describe a certificate file in plain words",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspect(cmd.OutOrStdout(), args[0], dir)
		},
	}
	cmd.AddCommand(initCmd, issueCmd, inspectCmd, newRotateCmd(&dir), newRevokeCmd(&dir))
	return cmd
}

func inspect(w io.Writer, path, dir string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	certs, err := security.ParseCertificates(data)
	if err != nil {
		if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
			return fmt.Errorf("%s holds a private key, not a certificate; inspect the .pem beside it", path)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	now := time.Now()
	for i, c := range certs {
		role := "workload certificate"
		switch {
		case c.IsCA:
			role = "certificate authority"
		case i > 0:
			role = "chain certificate"
		}
		fmt.Fprintf(w, "%s #%d: %s\n", path, i+1, role)
		fmt.Fprintf(w, "  subject:    %s\n", c.Subject)
		fmt.Fprintf(w, "  issuer:     %s\n", c.Issuer)
		for _, u := range c.URIs {
			fmt.Fprintf(w, "  identity:   %s\n", u)
		}
		if len(c.DNSNames)+len(c.IPAddresses) > 0 {
			var names []string
			names = append(names, c.DNSNames...)
			for _, ip := range c.IPAddresses {
				names = append(names, ip.String())
			}
			fmt.Fprintf(w, "  hosts:      %s\n", strings.Join(names, ", "))
		}
		fmt.Fprintf(w, "  valid:      %s to %s (%s)\n", c.NotBefore.UTC().Format(time.RFC3339),
			c.NotAfter.UTC().Format(time.RFC3339), validity(c, now))
		fmt.Fprintf(w, "  key:        %s\n", keyDesc(c))
		fmt.Fprintf(w, "  usage:      %s\n", usageDesc(c))
		fmt.Fprintf(w, "  serial:     %x\n", c.SerialNumber)
	}
	if certs[0].IsCA {
		return nil
	}
	if now.After(certs[0].NotAfter) || now.Before(certs[0].NotBefore) {
		return fmt.Errorf("%s is not valid now: %s", path, validity(certs[0], now))
	}
	// Check the leaf against the bundle of the certs folder, when there is one.
	bundle := security.FilesFor(dir, "").Bundle
	keyPath := strings.TrimSuffix(path, ".pem") + "-key.pem"
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(bundle); err == nil {
			if id, err := security.LoadIdentity(path, keyPath, bundle); err != nil {
				fmt.Fprintf(w, "  check:      REFUSED: %v\n", err)
				return fmt.Errorf("%s is not a usable moat identity (%s)", path, security.ReasonOf(err))
			} else {
				fmt.Fprintf(w, "  check:      ok, a valid moat identity for %s against %s\n", id.ID(), bundle)
			}
		}
	}
	return nil
}

func validity(c *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "NOT YET VALID"
	case now.After(c.NotAfter):
		return "EXPIRED " + now.Sub(c.NotAfter).Round(time.Second).String() + " ago"
	}
	return "valid, " + c.NotAfter.Sub(now).Round(time.Minute).String() + " left"
}

func keyDesc(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

func usageDesc(c *x509.Certificate) string {
	var u []string
	if c.KeyUsage&x509.KeyUsageCertSign != 0 {
		u = append(u, "signs certificates")
	}
	if c.KeyUsage&x509.KeyUsageDigitalSignature != 0 {
		u = append(u, "digital signature")
	}
	for _, e := range c.ExtKeyUsage {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			u = append(u, "TLS server (serverAuth)")
		case x509.ExtKeyUsageClientAuth:
			u = append(u, "TLS client (clientAuth)")
		}
	}
	if len(u) == 0 {
		return "none stated"
	}
	return strings.Join(u, ", ")
}

func newRotateCmd(dir *string) *cobra.Command {
	var (
		lifetime   time.Duration
		rootStart  bool
		rootFinish bool
	)
	cmd := &cobra.Command{
		Use:   "rotate [service]...",
		Short: "Reissue workload certificates, or rotate the root with overlap",
		Long: `rotate reissues the named services' certificates in place (atomically); services
started with identity files pick them up without a restart.

A root rotation takes two steps, with a pause between them long enough for
every workload to reload its files:
  moat certs rotate --root-start    new root; bundle trusts old and new; every
                                    certificate in the folder reissued from the new root
  moat certs rotate --root-finish   bundle trusts the new root only`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch {
			case rootStart && rootFinish:
				return errors.New("--root-start and --root-finish are two separate steps")
			case rootStart:
				return rotateRootStart(out, *dir, lifetime)
			case rootFinish:
				ca, err := security.LoadCA(*dir)
				if err != nil {
					return err
				}
				if err := security.WriteBundle(*dir, ca); err != nil {
					return err
				}
				fmt.Fprintf(out, "bundle now trusts only the root of %s\n", ca.TrustDomain().Name())
				return nil
			}
			if len(args) == 0 {
				return errors.New("name the services to rotate, or use --root-start / --root-finish")
			}
			ca, err := security.LoadCA(*dir)
			if err != nil {
				return err
			}
			for _, svc := range args {
				files, err := ca.IssueFiles(*dir, svc, security.WithLifetime(lifetime))
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "rotated %s (%s)\n", svc, files.Cert)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&lifetime, "lifetime", security.DefaultLeafLifetime, "validity of new certificates")
	cmd.Flags().BoolVar(&rootStart, "root-start", false, "begin a root rotation")
	cmd.Flags().BoolVar(&rootFinish, "root-finish", false, "end a root rotation: drop the old root")
	return cmd
}

func rotateRootStart(out io.Writer, dir string, lifetime time.Duration) error {
	old, err := security.LoadCA(dir)
	if err != nil {
		return err
	}
	services, err := workloadsIn(dir)
	if err != nil {
		return err
	}
	fresh, err := security.NewCA(old.TrustDomain().Name())
	if err != nil {
		return err
	}
	if err := security.WriteBundle(dir, old, fresh); err != nil {
		return err
	}
	if err := fresh.Save(dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "new root for %s; bundle trusts old and new roots\n", fresh.TrustDomain().Name())
	for _, svc := range services {
		if _, err := fresh.IssueFiles(dir, svc, security.WithLifetime(lifetime)); err != nil {
			return err
		}
		fmt.Fprintf(out, "reissued %s from the new root\n", svc)
	}
	fmt.Fprintln(out, "when every workload has reloaded, run: moat certs rotate --root-finish")
	return nil
}

// workloadsIn lists the services with a certificate in dir.
func workloadsIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, "-key.pem") || !strings.HasSuffix(name, ".pem") {
			continue
		}
		svc := strings.TrimSuffix(name, ".pem")
		if _, err := os.Stat(filepath.Join(dir, svc+"-key.pem")); err == nil && svc != "ca" {
			out = append(out, svc)
		}
	}
	return out, nil
}

func newRevokeCmd(dir *string) *cobra.Command {
	var lifetime time.Duration
	var refresh bool
	cmd := &cobra.Command{
		Use:   "revoke <certificate-file | serial-hex>...",
		Short: "Revoke certificates in the development CA's revocation list (crl.pem)",
		Long: `revoke adds certificates to <dir>/crl.pem, signed by the dev CA. Services
started with a revocation list (rpc.WithRevocation(security.NewCRLFile(...)))
refuse the revoked peers at once and close their open connections. The list
is valid for --lifetime; past it, services fail closed, so refresh it with
'moat certs revoke --refresh' before then.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !refresh {
				return errors.New("name certificate files or serial numbers to revoke, or pass --refresh")
			}
			ca, err := security.LoadCA(*dir)
			if err != nil {
				return err
			}
			var serials []*big.Int
			for _, a := range args {
				s, err := serialOf(a)
				if err != nil {
					return err
				}
				serials = append(serials, s)
			}
			path, err := ca.Revoke(*dir, lifetime, serials...)
			if err != nil {
				return err
			}
			for _, s := range serials {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked serial %x\n", s)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revocation list %s valid until %s\n", path,
				time.Now().Add(lifetime).UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().DurationVar(&lifetime, "lifetime", security.DefaultCRLLifetime, "validity of the list")
	cmd.Flags().BoolVar(&refresh, "refresh", false, "re-sign the list with a new validity, revoking nothing new")
	return cmd
}

func serialOf(arg string) (*big.Int, error) {
	if data, err := os.ReadFile(arg); err == nil {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%s holds no PEM certificate", arg)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arg, err)
		}
		return c.SerialNumber, nil
	}
	s, ok := new(big.Int).SetString(strings.TrimPrefix(arg, "0x"), 16)
	if !ok {
		return nil, fmt.Errorf("%q is neither a certificate file nor a hexadecimal serial number", arg)
	}
	return s, nil
}
