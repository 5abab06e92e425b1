package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/moatrpc/moat/registry"
	"github.com/moatrpc/moat/rpc"
	"github.com/moatrpc/moat/security/fields"
)

func newCallCmd() *cobra.Command {
	var (
		cfg    callerConfig
		reveal bool
	)
	cmd := &cobra.Command{
		Use:   "call <service> <Service.Method> [json|-]",
		Short: "Call a method of a service found in Consul, over mutual TLS, with JSON in and out",
		Long: `call resolves <service> (its registry name, e.g. auth) in Consul, connects over
mutual TLS with a workload certificate (--as, default "caller", from
--certs-dir; or $MOAT_CERT, $MOAT_KEY, $MOAT_BUNDLE) and accepts only a server
proving it is <service>. It learns the method's types from the server by gRPC
reflection, encodes the JSON request (an argument, "-" for stdin, or {} when
absent), and prints the JSON response on stdout; a server-streaming method
prints each message as it arrives.

The method is Service.Method, short (AuthService.Login) or full
(moat.example.auth.v1.AuthService.Login). Fields marked SENSITIVITY_PII or
SENSITIVITY_SECRET with moat's field option (or debug_redact) are printed as
"[REDACTED]" unless --reveal is given.`,
		Example: `  moat call auth AuthService.Login '{"username":"ada","password":"..."}'
  moat call profile ProfileService.GetProfile '{"sessionToken":"..."}' --reveal`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := "{}"
			if len(args) == 3 {
				body = args[2]
			}
			if body == "-" {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return fmt.Errorf("read request from stdin: %w", err)
				}
				body = string(b)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.timeout)
			defer cancel()
			return runCall(ctx, cmd.OutOrStdout(), &cfg, args[0], args[1], body, reveal)
		},
	}
	addCallerFlags(cmd, &cfg)
	cmd.Flags().BoolVar(&reveal, "reveal", false, "print sensitive fields in clear")
	return cmd
}

func runCall(ctx context.Context, out io.Writer, cfg *callerConfig, service, method, body string,
	reveal bool) error {
	id, err := cfg.identity()
	if err != nil {
		return err
	}
	reg, err := cfg.registry(id)
	if err != nil {
		return err
	}
	defer reg.Close()

	slog.Info("resolving in Consul", "service", service, "consul", cfg.consul)
	found, err := reg.GetService(ctx, service)
	if errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("service %q has no passing node in Consul at %s ('moat services' lists "+
			"what is registered)", service, cfg.consul)
	}
	if err != nil {
		return err
	}
	slog.Info("connecting over mutual TLS", "service", service, "nodes", len(registry.Addresses(found)),
		"as", id.ID().String())
	ring, err := cfg.keyring()
	if err != nil {
		return err
	}
	var dialOpts []grpc.DialOption
	if ring != nil {
		defer ring.Close()
		dialOpts = append(dialOpts, rpc.WithDialKeyring(ring))
	}
	conn, err := rpc.Dial(reg, id, service, dialOpts...)
	if err != nil {
		return err
	}
	defer conn.Close()

	slog.Info("reading the API by reflection", "service", service)
	refl, err := newReflector(ctx, conn)
	if err != nil {
		return callError(service, err)
	}
	defer refl.close()
	md, files, err := refl.method(method)
	if err != nil {
		return err
	}
	types := dynamicpb.NewTypes(files)
	req := dynamicpb.NewMessage(md.Input())
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal([]byte(body), req); err != nil {
		return fmt.Errorf("request is not a valid %s in JSON: %w", md.Input().FullName(), err)
	}
	if ring == nil && fields.NeedsSealing(req) {
		return fmt.Errorf("not sent: %s has SECRET fields, which moat never sends in clear; pass "+
			"--keys with the keysets folder or set %s ('moat dev' prints it)",
			md.Input().FullName(), rpc.EnvKeysetsDir)
	}
	path := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	print := func(m proto.Message) error { return printMessage(out, m, types, reveal) }

	slog.Info("calling", "method", path)
	switch {
	case md.IsStreamingClient():
		return fmt.Errorf("%s streams from the client: moat call makes unary and server-streaming calls",
			md.FullName())
	case md.IsStreamingServer():
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, path)
		if err != nil {
			return callError(service, err)
		}
		if err := stream.SendMsg(req); err != nil {
			return callError(service, err)
		}
		if err := stream.CloseSend(); err != nil {
			return callError(service, err)
		}
		for {
			resp := dynamicpb.NewMessage(md.Output())
			err := stream.RecvMsg(resp)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return callError(service, err)
			}
			if err := print(resp); err != nil {
				return err
			}
		}
	}
	resp := dynamicpb.NewMessage(md.Output())
	if err := conn.Invoke(ctx, path, req, resp); err != nil {
		return callError(service, err)
	}
	return print(resp)
}

// callError turns a gRPC status into a one-line error.
func callError(service string, err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s answered %s: %s", service, st.Code(), st.Message())
	}
	return err
}

// printMessage writes m as indented JSON, with sensitive fields redacted
// unless reveal is set.
func printMessage(w io.Writer, m proto.Message, types *dynamicpb.Types, reveal bool) error {
	if !reveal {
		m = fields.Redact(m)
	}
	b, err := protojson.MarshalOptions{Resolver: types}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode response as JSON: %w", err)
	}
	// protojson varies its whitespace on purpose; encoding/json indents
	// the same way every time, so scripts and docs can rely on it.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("encode response as JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// splitMethod reads "pkg.Service.Method", "Service.Method" or
// "pkg.Service/Method".
func splitMethod(s string) (service, method string, ok bool) {
	s = strings.TrimPrefix(s, "/")
	i := strings.LastIndexAny(s, "/.")
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	service, method = s[:i], s[i+1:]
	if strings.Contains(service, "/") || strings.HasPrefix(service, ".") || strings.HasSuffix(service, ".") {
		return "", "", false
	}
	return service, method, true
}

// method finds the method descriptor named by arg among the server's
// services, with the files that define it and their dependencies.
func (r *reflector) method(arg string) (protoreflect.MethodDescriptor, *protoregistry.Files, error) {
	svcName, methodName, ok := splitMethod(arg)
	if !ok {
		return nil, nil, fmt.Errorf("%q is not Service.Method (for example AuthService.Login)", arg)
	}
	names, err := r.listServices()
	if err != nil {
		return nil, nil, err
	}
	var candidates []string
	for _, n := range names {
		if n == svcName || strings.HasSuffix(n, "."+svcName) {
			candidates = append(candidates, n)
		}
	}
	// A server also lists go-micro's alias of each service (<registry
	// name>.<Service>), which no file defines: keep what resolves.
	var services []protoreflect.ServiceDescriptor
	var files *protoregistry.Files
	for _, c := range candidates {
		f, err := r.filesFor(c)
		if err != nil {
			continue
		}
		d, err := f.FindDescriptorByName(protoreflect.FullName(c))
		if sd, ok := d.(protoreflect.ServiceDescriptor); err == nil && ok {
			services, files = append(services, sd), f
		}
	}
	switch len(services) {
	case 0:
		return nil, nil, fmt.Errorf("the server has no service %q; it serves %s", svcName,
			strings.Join(r.public(names), ", "))
	case 1:
	default:
		var full []string
		for _, s := range services {
			full = append(full, string(s.FullName()))
		}
		return nil, nil, fmt.Errorf("%q is ambiguous: %s; give the full name", svcName,
			strings.Join(full, ", "))
	}
	sd := services[0]
	md := sd.Methods().ByName(protoreflect.Name(methodName))
	if md == nil {
		var have []string
		for i := range sd.Methods().Len() {
			have = append(have, string(sd.Methods().Get(i).Name()))
		}
		return nil, nil, fmt.Errorf("%s has no method %q; it has %s", sd.FullName(), methodName,
			strings.Join(have, ", "))
	}
	return md, files, nil
}

// public leaves out reflection's own services from names, for messages.
func (r *reflector) public(names []string) []string {
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, "grpc.reflection.") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
