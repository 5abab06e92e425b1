// Package rpc is the SDK moat services are written against: a [Service]
// with a gRPC [Server] for standard grpc-go generated services, and a
// [Client] that reaches other services by name through the registry.
//
// Every connection is mutual TLS 1.3. [NewService] refuses to build a
// service without a workload identity whose SPIFFE ID names the service,
// and there is no option to run without one. A client connection to a
// service accepts only a server that proves, with a certificate chained to
// the trust bundle, that it is that service; the address the registry gave
// plays no part in that check. Handlers learn their caller's verified
// identity from [security.PeerFromContext].
//
// A minimal service:
//
//	svc, err := rpc.NewService("greeter",
//		rpc.WithIdentityFiles(cert, key, bundle),
//		rpc.WithRegistry(reg))
//	if err != nil { ... }
//	greeterv1.RegisterGreeterServer(svc.Server(), &greeter{})
//	err = svc.Run(ctx) // serves until ctx ends or SIGINT/SIGTERM
//
// and a call to it from another service:
//
//	conn, err := svc.Client().Conn("greeter")
//	reply, err := greeterv1.NewGreeterClient(conn).Hello(ctx, req)
package rpc
