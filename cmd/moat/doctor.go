package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/security"
)

// check is one line of the doctor's report.
type check struct {
	name string
	err  error
	fix  string
	warn bool
}

func newDoctorCmd() *cobra.Command {
	var (
		dir    string
		as     string
		consul string
		nats   string
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check local certificates and the TLS of Consul and NATS, and say how to fix what is wrong",
		Long: `doctor checks the development CA and every workload certificate in the
certificates folder (chain, identity, validity, time left), then the running
environment: Consul over HTTPS with a client certificate (and that it refuses
clients without one), and NATS over TLS when a URL is given. Each problem is
printed with its fix. It exits non-zero when any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if consul == "" {
				consul = os.Getenv("MOAT_CONSUL_ADDR")
			}
			if nats == "" {
				nats = os.Getenv("MOAT_NATS_URL")
			}
			checks := doctor(cmd.Context(), dir, as, consul, nats)
			return report(cmd.OutOrStdout(), checks)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", envOr("MOAT_CERTS_DIR", ".dev/certs"), "certificates folder")
	cmd.Flags().StringVar(&as, "as", "caller", "workload identity used to reach Consul and NATS")
	cmd.Flags().StringVar(&consul, "consul", "", "Consul HTTPS address (default $MOAT_CONSUL_ADDR)")
	cmd.Flags().StringVar(&nats, "nats", "", "NATS URL (default $MOAT_NATS_URL)")
	return cmd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func report(w io.Writer, checks []check) error {
	failed := 0
	for _, c := range checks {
		switch {
		case c.err == nil:
			fmt.Fprintf(w, "√ %s\n", c.name)
		case c.warn:
			fmt.Fprintf(w, "‼ %s\n    %v\n", c.name, c.err)
		default:
			failed++
			fmt.Fprintf(w, "× %s\n    %v\n", c.name, c.err)
		}
		if c.err != nil && c.fix != "" {
			fmt.Fprintf(w, "    fix: %s\n", c.fix)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(checks))
	}
	fmt.Fprintf(w, "\nall %d checks passed\n", len(checks))
	return nil
}

func doctor(ctx context.Context, dir, as, consulAddr, natsURL string) []check {
	var checks []check
	ca, err := security.LoadCA(dir)
	checks = append(checks, check{name: "development CA in " + dir, err: err,
		fix: "moat certs init --dir " + dir})
	if err != nil {
		return checks
	}
	if left := time.Until(ca.Certificate().NotAfter); left < 30*24*time.Hour {
		checks = append(checks, check{name: "CA validity", warn: left > 0,
			err: fmt.Errorf("the root expires in %v", left.Round(time.Hour)),
			fix: "moat certs rotate --root-start, then --root-finish"})
	}

	services, err := workloadsIn(dir)
	if err != nil {
		return append(checks, check{name: "list workload certificates", err: err})
	}
	checks = append(checks, orphanCerts(dir)...)
	var crl *security.CRLFile
	if _, err := os.Stat(filepath.Join(dir, security.CRLFileName)); err == nil {
		crl = security.NewCRLFileWithRoots(filepath.Join(dir, security.CRLFileName),
			[]*x509.Certificate{ca.Certificate()})
	}
	var identity *security.Identity
	for _, svc := range services {
		if svc == "consul" || svc == "nats" {
			continue
		}
		f := security.FilesFor(dir, svc)
		id, err := security.LoadIdentity(f.Cert, f.Key, f.Bundle)
		c := check{name: "workload certificate " + svc, err: err,
			fix: "moat certs issue --dir " + dir + " " + svc}
		if err == nil {
			leaf := id.Leaf()
			left := time.Until(leaf.NotAfter)
			c.name += fmt.Sprintf(" (%s, %v left)", id.ID(), left.Round(time.Minute))
			if left < leaf.NotAfter.Sub(leaf.NotBefore)/3 {
				c.err, c.warn = fmt.Errorf("less than a third of its lifetime left"), true
				c.fix = "moat certs rotate --dir " + dir + " " + svc
			}
			if crl != nil {
				if rerr := crl.Check([]*x509.Certificate{leaf}); rerr != nil {
					c.err, c.warn = rerr, false
					c.fix = "moat certs issue --dir " + dir + " " + svc + " (or refresh: moat certs revoke --refresh)"
				}
			}
		}
		checks = append(checks, c)
		if svc == as && err == nil {
			identity = id
		}
	}
	if identity == nil {
		return append(checks, check{name: "identity " + as + " to reach Consul and NATS",
			err: fmt.Errorf("no valid certificate for %q in %s", as, dir),
			fix: "moat certs issue --dir " + dir + " " + as})
	}

	if consulAddr == "" {
		checks = append(checks, check{name: "Consul", warn: true, err: errors.New("no address given"),
			fix: "run 'moat dev' and 'source .dev/env', or pass --consul"})
	} else {
		checks = append(checks, consulChecks(ctx, identity, consulAddr)...)
	}
	if natsURL != "" {
		checks = append(checks, natsChecks(identity, natsURL)...)
	}
	return checks
}

func consulChecks(ctx context.Context, id *security.Identity, addr string) []check {
	var checks []check
	host, _, _ := net.SplitHostPort(addr)
	conf := &tls.Config{RootCAs: id.Bundle(), ServerName: host,
		Certificates: []tls.Certificate{*id.TLSCertificate()}}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, conf)
	c := check{name: "Consul " + addr + " over TLS, server certificate trusted", err: err,
		fix: "check the agent runs with tls.defaults cert_file from the same CA ('moat dev' does)"}
	if err == nil {
		v := conn.ConnectionState().Version
		conn.Close()
		if v != tls.VersionTLS13 {
			c.err, c.fix = fmt.Errorf("negotiated %s", tls.VersionName(v)), `set tls.defaults.tls_min_version = "TLSv1_3"`
		}
	}
	checks = append(checks, c)
	if err != nil {
		return checks
	}

	anon := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: id.Bundle(), ServerName: host}}}
	defer anon.CloseIdleConnections()
	resp, err := anon.Get("https://" + addr + "/v1/agent/self")
	c = check{name: "Consul refuses clients without a certificate",
		fix: "set tls.https.verify_incoming = true in the agent's configuration"}
	if err == nil {
		resp.Body.Close()
		c.err = fmt.Errorf("the agent answered %s to a client without certificate", resp.Status)
	}
	checks = append(checks, c)

	reg, err := registry.NewConsul(registry.WithConsulAddress(addr), registry.WithConsulIdentity(id),
		registry.WithConsulToken(os.Getenv("MOAT_CONSUL_TOKEN")))
	if err != nil {
		return append(checks, check{name: "Consul client", err: err})
	}
	defer reg.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := reg.ListServices(ctx)
	checks = append(checks, check{name: fmt.Sprintf("Consul API with a client certificate (%d services)", len(list)),
		err: err, fix: "check MOAT_CONSUL_TOKEN when ACLs are on"})
	return checks
}

func natsChecks(id *security.Identity, url string) []check {
	addr := strings.TrimPrefix(strings.TrimPrefix(url, "tls://"), "nats://")
	conf, err := security.ClientTLSConfig(id, "nats", security.WithoutResumption())
	if err != nil {
		return []check{{name: "NATS TLS", err: err}}
	}
	// A NATS server sends its INFO line in clear, then upgrades to TLS.
	raw, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return []check{{name: "NATS " + addr + " reachable", err: err, fix: "start it with 'moat dev'"}}
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _ := raw.Read(buf)
	info := string(buf[:n])
	checks := []check{{name: "NATS " + addr + " requires TLS", fix: "start the server with TLS and verify",
		err: func() error {
			if !strings.Contains(info, `"tls_required":true`) {
				return errors.New("server does not require TLS")
			}
			return nil
		}()}}
	tc := tls.Client(raw, conf)
	err = tc.Handshake()
	checks = append(checks, check{name: "NATS server presents spiffe://.../svc/nats and accepts our certificate",
		err: err, fix: "issue the server's certificate with 'moat certs issue nats'"})
	return checks
}

// orphanCerts reports certificates without their key, and keys without
// their certificate.
func orphanCerts(dir string) []check {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []check
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, "-key.pem"):
			svc := strings.TrimSuffix(name, "-key.pem")
			if svc == "ca" {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, svc+".pem")); err != nil {
				out = append(out, check{name: "workload certificate " + svc,
					err: fmt.Errorf("%s has no certificate beside it", name),
					fix: "moat certs issue --dir " + dir + " " + svc})
			}
		case strings.HasSuffix(name, ".pem"):
			svc := strings.TrimSuffix(name, ".pem")
			if svc == "ca" || svc == "bundle" || svc == "crl" {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, svc+"-key.pem")); err != nil {
				out = append(out, check{name: "workload certificate " + svc,
					err: fmt.Errorf("%s has no key beside it", name),
					fix: "moat certs issue --dir " + dir + " " + svc})
			}
		}
	}
	return out
}
