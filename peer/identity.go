package peer

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tierlimit/tierlimit/forward"
)

// The metadata keys that name the calling process on every call (see
// Identify): its member name and its boot id.
const (
	fromKey = "tierlimit-from"
	bootKey = "tierlimit-boot"
)

// maxNameLen bounds a name or boot id the server takes from a call.
const maxNameLen = 256

// Identify returns the dial options that name this process, member name
// and boot id, on every call a Client makes: the owner records who holds
// each lease it grants, to take back what a holder that failed or
// restarted left unspent (ownership.Owner.Members). Pass them to NewBook.
func Identify(name, boot string) []grpc.DialOption {
	md := metadata.Pairs(fromKey, name, bootKey, boot)
	with := func(ctx context.Context) context.Context { return metadata.NewOutgoingContext(ctx, md) }
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(with(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(with(ctx), desc, cc, method, opts...)
		}),
	}
}

// holderOf returns the process a call's metadata names, or the zero Holder
// if it names none, or one too long to be a member's.
func holderOf(ctx context.Context) forward.Holder {
	md, _ := metadata.FromIncomingContext(ctx)
	from, boot := md.Get(fromKey), md.Get(bootKey)
	if len(from) != 1 || len(boot) != 1 || from[0] == "" || len(from[0]) > maxNameLen || len(boot[0]) > maxNameLen {
		return forward.Holder{}
	}
	return forward.Holder{Name: from[0], Boot: boot[0]}
}
