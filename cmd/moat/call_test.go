package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatrpc/moat/internal/devenv"
	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	echov1 "github.com/moatrpc/moat/proto/moat/example/echo/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security"
	"github.com/moatrpc/moat/services"
	"github.com/moatrpc/moat/services/auth"
	"github.com/moatrpc/moat/services/echo"
	"github.com/moatrpc/moat/services/profile"
)

// runCLI runs moat with args and returns what it printed on stdout and
// stderr.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// startExampleServices starts a dev environment (CA, certificates, Consul)
// and the example services in this process, registered in Consul.
func startExampleServices(t *testing.T) *devenv.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env, err := devenv.Start(ctx, devenv.EnvConfig{
		Dir: t.TempDir(), TrustDomain: "moat.test",
		Services: []string{"auth", "profile", "echo", "caller"},
	})
	if err != nil {
		t.Fatalf("start dev environment: %v", err)
	}
	t.Cleanup(func() { env.Stop() })
	users, err := services.Users()
	if err != nil {
		t.Fatal(err)
	}
	register := map[string]func(*rpc.Service){
		"auth": func(s *rpc.Service) { authv1.RegisterAuthServiceHandler(s.Server(), auth.New(users)) },
		"profile": func(s *rpc.Service) {
			profilev1.RegisterProfileServiceHandler(s.Server(),
				profile.New(users, authv1.NewAuthService("auth", s.Client())))
		},
		"echo": func(s *rpc.Service) { echov1.RegisterEchoServiceHandler(s.Server(), echo.Handler{}) },
	}
	for _, name := range []string{"auth", "profile", "echo"} {
		f := security.FilesFor(env.CertsDir, name)
		id, err := security.LoadIdentity(f.Cert, f.Key, f.Bundle)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := registry.NewConsul(registry.WithConsulAddress(env.Consul.Addr()),
			registry.WithConsulIdentity(id))
		if err != nil {
			t.Fatal(err)
		}
		svc, err := rpc.NewService(name, rpc.WithIdentity(id), rpc.WithRegistry(reg),
			rpc.WithVersion("1.0.0"), rpc.WithoutSignalHandling(), rpc.WithKeysetDir(env.KeysDir))
		if err != nil {
			t.Fatal(err)
		}
		register[name](svc)
		if err := svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			svc.Stop(context.Background())
			reg.Close()
		})
	}
	return env
}

func TestCallServicesDescribe(t *testing.T) {
	env := startExampleServices(t)
	users, _ := services.Users()
	ada := users[0]
	common := []string{"--certs-dir", env.CertsDir, "--consul", env.Consul.Addr(), "--keys", env.KeysDir}
	cli := func(t *testing.T, args ...string) (string, string, error) {
		t.Helper()
		return runCLI(t, append(args, common...)...)
	}
	login := `{"username":"` + ada.Username + `","password":"` + ada.Password + `"}`

	// A session token, revealed, for the profile calls.
	out, _, err := cli(t, "call", "auth", "AuthService.Login", login, "--reveal")
	if err != nil {
		t.Fatal(err)
	}
	var session struct {
		SessionToken string `json:"sessionToken"`
		UserID       string `json:"userId"`
	}
	if err := json.Unmarshal([]byte(out), &session); err != nil || session.SessionToken == "" ||
		strings.Contains(out, "REDACTED") || session.UserID != ada.UserID {
		t.Fatalf("login with --reveal printed %q (%v)", out, err)
	}
	getProfile := `{"sessionToken":"` + session.SessionToken + `"}`

	tests := []struct {
		name    string
		args    []string
		want    []string // in stdout, or in the error when wantErr
		notWant []string
		wantErr bool
	}{
		{
			name:    "call redacts secret fields",
			args:    []string{"call", "auth", "AuthService.Login", login},
			want:    []string{`"sessionToken": "[REDACTED]"`, `"userId": "` + ada.UserID + `"`},
			notWant: []string{session.SessionToken},
		},
		{
			name:    "call with the full method name redacts PII",
			args:    []string{"call", "profile", "moat.example.profile.v1.ProfileService.GetProfile", getProfile},
			want:    []string{`"name": "[REDACTED]"`, `"street": "[REDACTED]"`, `"userId": "` + ada.UserID + `"`},
			notWant: []string{ada.Name, ada.Email, ada.Phone, ada.Address.Street},
		},
		{
			name: "call --reveal prints PII",
			args: []string{"call", "profile", "ProfileService.GetProfile", getProfile, "--reveal"},
			want: []string{ada.Name, ada.Email, ada.Address.Street},
		},
		{
			name: "call a server stream prints each message",
			args: []string{"call", "echo", "EchoService.Repeat", `{"message":"hi","count":3}`},
			want: []string{`"message": "hi"`, `"index": 1`, `"index": 2`},
		},
		{
			name: "call with slash form and no body",
			args: []string{"call", "echo", "moat.example.echo.v1.EchoService/Echo"},
			want: []string{"{}"},
		},
		{
			name:    "call refuses a client stream",
			args:    []string{"call", "echo", "EchoService.Collect"},
			want:    []string{"unary and server-streaming"},
			wantErr: true,
		},
		{
			name:    "call an unknown method lists the methods",
			args:    []string{"call", "auth", "AuthService.Logout"},
			want:    []string{`no method "Logout"`, "Login, Validate"},
			wantErr: true,
		},
		{
			name:    "call an unknown service of the server",
			args:    []string{"call", "auth", "BillingService.Pay"},
			want:    []string{`no service "BillingService"`, "moat.example.auth.v1.AuthService"},
			wantErr: true,
		},
		{
			name:    "call a service that is not registered",
			args:    []string{"call", "billing", "BillingService.Pay"},
			want:    []string{`"billing" has no passing node`},
			wantErr: true,
		},
		{
			name:    "call with bad JSON",
			args:    []string{"call", "auth", "AuthService.Login", `{"user":1}`},
			want:    []string{"not a valid moat.example.auth.v1.LoginRequest"},
			wantErr: true,
		},
		{
			name:    "call answers the server's status",
			args:    []string{"call", "auth", "AuthService.Login", `{"username":"nobody","password":"x"}`},
			want:    []string{"Unauthenticated"},
			wantErr: true,
		},
		{
			name:    "call without a certificate",
			args:    []string{"call", "auth", "AuthService.Login", login, "--as", "stranger"},
			want:    []string{"no workload certificate", "moat certs issue stranger"},
			wantErr: true,
		},
		{
			name: "services table",
			args: []string{"services"},
			want: []string{"SERVICE", "PASSING", "CRITICAL", "auth", "profile", "echo",
				"spiffe://moat.test/svc/auth", "1.0.0"},
		},
		{
			name: "describe",
			args: []string{"describe", "echo"},
			want: []string{"EchoService.Echo", "EchoService.Repeat", "moat.example.echo.v1.EchoService",
				"passing", "spiffe://moat.test/svc/echo", "protocol=grpc"},
		},
		{
			name: "describe --addresses",
			args: []string{"describe", "auth", "--addresses"},
			want: []string{"127.0.0.1:"},
		},
		{
			name:    "describe an unknown service",
			args:    []string{"describe", "billing"},
			want:    []string{`no service "billing"`},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := cli(t, tt.args...)
			text := out
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error; printed %s", out)
				}
				text = err.Error()
			} else if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(text, w) {
					t.Errorf("output shows %q:\n%s", w, text)
				}
			}
		})
	}

	t.Run("services --json", func(t *testing.T) {
		out, _, err := cli(t, "services", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var list []serviceSummary
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		found := 0
		for _, s := range list {
			if s.Name == "auth" || s.Name == "profile" || s.Name == "echo" {
				found++
				want := "spiffe://moat.test/svc/" + s.Name
				if s.Passing != 1 || s.Critical != 0 || len(s.Identities) != 1 || s.Identities[0] != want ||
					len(s.Versions) != 1 || s.Versions[0] != "1.0.0" {
					t.Errorf("%+v", s)
				}
			}
		}
		if found != 3 {
			t.Fatalf("services --json listed %s", out)
		}
	})
	t.Run("describe --json", func(t *testing.T) {
		out, _, err := cli(t, "describe", "echo", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var d serviceDetail
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		streams := map[string]bool{}
		for _, e := range d.Endpoints {
			streams[e.Name] = e.Stream
		}
		want := map[string]bool{"EchoService.Echo": false, "EchoService.Repeat": true,
			"EchoService.Collect": true, "EchoService.Chat": true}
		if len(streams) != len(want) || len(d.Nodes) != 1 || d.Nodes[0].Status != "passing" {
			t.Fatalf("describe --json: %s", out)
		}
		for k, v := range want {
			if streams[k] != v {
				t.Fatalf("endpoint %s stream=%v, want %v", k, streams[k], v)
			}
		}
	})
	t.Run("identity from MOAT_CERT, MOAT_KEY, MOAT_BUNDLE", func(t *testing.T) {
		f := security.FilesFor(env.CertsDir, "caller")
		t.Setenv(rpc.EnvCert, f.Cert)
		t.Setenv(rpc.EnvKey, f.Key)
		t.Setenv(rpc.EnvBundle, f.Bundle)
		out, _, err := runCLI(t, "call", "echo", "EchoService.Echo", `{"message":"m","secret":"s3"}`,
			"--certs-dir", filepath.Join(t.TempDir(), "empty"), "--consul", env.Consul.Addr(),
			"--keys", env.KeysDir)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `"message": "m"`) || strings.Contains(out, "s3") {
			t.Fatalf("echo printed %s", out)
		}
	})
	t.Run("a SECRET field is not sent without a keyset", func(t *testing.T) {
		t.Setenv(rpc.EnvKeysetsDir, "")
		_, _, err := runCLI(t, "call", "echo", "EchoService.Echo", `{"message":"m","secret":"s3"}`,
			"--certs-dir", env.CertsDir, "--consul", env.Consul.Addr())
		if err == nil || !strings.Contains(err.Error(), "not sent") || !strings.Contains(err.Error(), "--keys") {
			t.Fatalf("call with a SECRET and no keyset: %v", err)
		}
	})
}
