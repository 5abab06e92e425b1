package rpc

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/moatrpc/moat/security/fields"
)

// WithKeyring turns on field encryption with ring: the client seals the
// SECRET fields of requests and unseals responses; the server unseals
// requests and seals responses. Handlers and interceptors added with
// [WithUnaryInterceptor] see clear values; the wire and anything that
// terminates TLS on the way see ciphertext.
func WithKeyring(ring *fields.Keyring, opts ...fields.SealerOption) Option {
	return optionFunc(func(o *options) {
		o.keyring, o.sealerOpts, o.keysetDir = ring, opts, ""
	})
}

// WithKeysetDir loads the keysets of dir ("<name>.json" files, see
// [fields.KeysetFiles]) into a keyring that follows changes to the files,
// and turns on field encryption as [WithKeyring] does. The keyring belongs
// to the service and is closed by Stop.
func WithKeysetDir(dir string, opts ...fields.SealerOption) Option {
	return optionFunc(func(o *options) {
		o.keyring, o.sealerOpts, o.keysetDir = nil, opts, dir
	})
}

// WithCallLog logs every call the service serves and makes: method, peer
// identity, status code and latency, and with [fields.WithPayloads] the
// messages. Fields marked PII or SECRET and sensitive metadata are
// redacted before anything reaches the logger set with [WithLogger].
func WithCallLog(opts ...fields.LogOption) Option {
	return optionFunc(func(o *options) { o.callLog, o.callLogOpts = true, opts })
}

// initFields builds the sealer and call logger the options ask for.
func (s *Service) initFields() error {
	o := &s.opts
	if o.keysetDir != "" {
		files, err := fields.KeysetFiles(o.keysetDir)
		if err != nil {
			return fmt.Errorf("rpc: service %q: %w", s.name, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("rpc: service %q: no keyset files (<name>.json) in %s; "+
				"create one with 'moat keys init --dir %s'", s.name, o.keysetDir, o.keysetDir)
		}
		ring, err := fields.LoadKeyring(files, fields.WithKeyringHook(s.keyringHook))
		if err != nil {
			return fmt.Errorf("rpc: service %q: %w", s.name, err)
		}
		o.keyring = ring
		s.owned = append(s.owned, ring.Close)
	}
	if o.keyring != nil {
		sealer, err := fields.NewSealer(o.keyring, o.sealerOpts...)
		if err != nil {
			return fmt.Errorf("rpc: service %q: %w", s.name, err)
		}
		s.sealer = sealer
	}
	if o.callLog {
		s.calls = fields.NewCallLogger(s.logger, o.callLogOpts...)
	}
	return nil
}

func (s *Service) keyringHook(ev fields.KeyringEvent) {
	if ev.Err != nil {
		s.logger.Warn("rpc: keyset reload refused, keeping the last good one",
			"keyset", ev.Name, "path", ev.Path, "err", ev.Err.Error())
		return
	}
	s.logger.Info("rpc: keyset loaded", "keyset", ev.Name, "primary_key", ev.Primary, "keys", ev.Keys)
}

// fieldClientInterceptors returns the client side: the call logger first,
// the sealer last, next to the wire, so that user interceptors see clear
// values.
func (s *Service) fieldClientInterceptors() ([]grpc.UnaryClientInterceptor, []grpc.StreamClientInterceptor) {
	var unary []grpc.UnaryClientInterceptor
	var stream []grpc.StreamClientInterceptor
	if s.calls != nil {
		unary = append(unary, s.calls.UnaryClientInterceptor())
		stream = append(stream, s.calls.StreamClientInterceptor())
	}
	unary = append(unary, s.opts.clientUnary...)
	stream = append(stream, s.opts.clientStream...)
	if s.sealer != nil {
		unary = append(unary, s.sealer.UnaryClientInterceptor())
		stream = append(stream, s.sealer.StreamClientInterceptor())
	} else {
		unary = append(unary, refuseClearSecrets)
	}
	return unary, stream
}

// secretMethods returns the methods of desc whose request or response type
// holds SECRET fields.
func secretMethods(desc *grpc.ServiceDesc) []string {
	file, _ := desc.Metadata.(string)
	fd, err := protoregistry.GlobalFiles.FindFileByPath(file)
	if err != nil {
		return nil
	}
	sd := fd.Services().ByName(protoreflect.FullName(desc.ServiceName).Name())
	if sd == nil {
		return nil
	}
	var out []string
	for i := 0; i < sd.Methods().Len(); i++ {
		m := sd.Methods().Get(i)
		in, _ := fields.Sensitive(m.Input())
		outSecret, _ := fields.Sensitive(m.Output())
		if in || outSecret {
			out = append(out, "/"+desc.ServiceName+"/"+string(m.Name()))
		}
	}
	return out
}

// refuseClearSecrets is the client interceptor of a service without a
// keyring: a request with SECRET fields is refused rather than sent with
// those fields in clear.
func refuseClearSecrets(ctx context.Context, method string, req, reply any,
	cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := req.(proto.Message); ok && fields.NeedsSealing(m) {
		return status.Errorf(codes.FailedPrecondition, "rpc: %s carries SECRET fields and this "+
			"client has no keyset to seal them: configure rpc.WithKeysetDir on the service, "+
			"or rpc.WithDialKeyring for rpc.Dial", method)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}
