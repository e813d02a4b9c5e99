package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/tierlimit/tierlimit/ownership"
)

// Keepalive of the connections between peers: a Client pings after this
// long without traffic and gives the connection up if the ping is not
// answered within the timeout, so a connection that died silently (a cut
// network drops packets without a reset) is rebuilt within about 15 s
// rather than after TCP's own timeouts. An Endpoint accepts pings that
// often.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// maxRecvMsgSize bounds one request an Endpoint reads: a full batch of
// forward.MaxCheckItems items with the longest keys fits.
const maxRecvMsgSize = 8 << 20

// Endpoint is a node's peer port: a Server over the node's store, on its
// own gRPC server and listener.
type Endpoint struct {
	lis  net.Listener
	grpc *grpc.Server
	srv  *Server
	log  *slog.Logger
	done chan struct{} // closed when Serve has returned
}

// Listen binds addr ("host:port"; port 0 picks one) and serves owner (the
// node's store, as the owner of its keys) to peers on it, secured by creds (see Credentials), until Stop or Kill; the
// counts peers move here go to receiver (nil: none are taken). Errors of the
// server after it started go to log.
func Listen(addr string, creds credentials.TransportCredentials, owner *ownership.Owner, receiver Receiver, log *slog.Logger) (*Endpoint, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen grpc %s: %w", addr, err)
	}
	// Peers hold one long-lived CheckStream each, so there are no per-call
	// goroutines worth pooling (grpc.NumStreamWorkers).
	g := grpc.NewServer(grpc.Creds(creds), grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: keepaliveTime / 2, PermitWithoutStream: true,
		}))
	srv := NewServer(owner, nil)
	srv.receiver = receiver
	e := &Endpoint{lis: lis, grpc: g, srv: srv, log: log, done: make(chan struct{})}
	e.srv.Register(g)
	go func() {
		defer close(e.done)
		if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			e.log.Error("grpc server stopped", "err", err)
		}
	}()
	return e, nil
}

// Addr returns the address the Endpoint listens on, with the real port.
func (e *Endpoint) Addr() net.Addr { return e.lis.Addr() }

// Stop stops serving gracefully: it asks the peers to end their streams
// once their checks are answered (a stream is a call in progress, which a
// graceful stop would otherwise wait for), waits for that until ctx ends,
// and then stops at once.
func (e *Endpoint) Stop(ctx context.Context) {
	e.srv.Drain()
	stopped := make(chan struct{})
	go func() { e.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		e.grpc.Stop()
		<-stopped
	}
	<-e.done
}

// Kill stops at once, as a crash would look to the peers.
func (e *Endpoint) Kill() {
	e.grpc.Stop()
	<-e.done
}
