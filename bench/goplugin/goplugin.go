// Package goplugin is the hashicorp/go-plugin side of the benchmarks: a
// Greeter plugin served over gRPC or net/rpc, shared by the host (the
// benchmark) and the plugin binary (cmd/gopluginpeer), as go-plugin's own
// examples do.
//
// The gRPC service is written by hand instead of generated: one unary
// method whose messages are protobuf's well-known BytesValue, so no .proto
// file and no protoc are needed, and the wire is what generated code would
// send.
package goplugin

import (
	"context"
	"net/rpc"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Greeter is the interface the plugin implements.
type Greeter interface {
	Greet(data []byte) ([]byte, error)
}

// Handshake is the handshake the host and the plugin share.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PLUGBUS_BENCH_PLUGIN",
	MagicCookieValue: "greeter",
}

// Name is the plugin's name in the plugin set.
const Name = "greeter"

// ProtocolEnv names the environment variable that makes the plugin serve
// net/rpc ("netrpc") instead of gRPC.
const ProtocolEnv = "PLUGBUS_BENCH_PROTOCOL"

// Plugin serves and dispenses a Greeter over either transport.
type Plugin struct {
	Impl Greeter // the plugin side's implementation; nil on the host
}

var (
	_ plugin.Plugin     = (*Plugin)(nil)
	_ plugin.GRPCPlugin = (*Plugin)(nil)
)

// Server is the net/rpc server.
func (p *Plugin) Server(*plugin.MuxBroker) (any, error) { return &rpcServer{p.Impl}, nil }

// Client is the net/rpc client.
func (p *Plugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) { return &rpcClient{c}, nil }

// GRPCServer registers the gRPC service.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&serviceDesc, &grpcServer{p.Impl})
	return nil
}

// GRPCClient is the gRPC client.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{c}, nil
}

type rpcServer struct{ impl Greeter }

func (s *rpcServer) Greet(data []byte, reply *[]byte) error {
	out, err := s.impl.Greet(data)
	*reply = out
	return err
}

type rpcClient struct{ c *rpc.Client }

func (c *rpcClient) Greet(data []byte) ([]byte, error) {
	var reply []byte
	err := c.c.Call("Plugin.Greet", data, &reply)
	return reply, err
}

// greeterServer is the service's handler type, as generated code would
// declare it.
type greeterServer interface {
	Greet(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

const greetMethod = "/plugbus.bench.Greeter/Greet"

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "plugbus.bench.Greeter",
	HandlerType: (*greeterServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Greet",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(greeterServer).Greet(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: greetMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(greeterServer).Greet(ctx, req.(*wrapperspb.BytesValue))
			})
		},
	}},
	Metadata: "greeter",
}

type grpcServer struct{ impl Greeter }

func (s *grpcServer) Greet(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	out, err := s.impl.Greet(in.GetValue())
	if err != nil {
		return nil, err
	}
	return wrapperspb.Bytes(out), nil
}

type grpcClient struct{ c *grpc.ClientConn }

func (c *grpcClient) Greet(data []byte) ([]byte, error) {
	out := new(wrapperspb.BytesValue)
	if err := c.c.Invoke(context.Background(), greetMethod, wrapperspb.Bytes(data), out); err != nil {
		return nil, err
	}
	return out.GetValue(), nil
}
