package peer

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/peerpb"
)

// closedAddr returns a loopback address that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

func TestClientCheckEmptyBatchMakesNoCall(t *testing.T) {
	c, err := NewClient(closedAddr(t), insecure.NewCredentials())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	ds, err := c.Check(t.Context(), nil)

	assert.NoError(t, err)
	assert.Empty(t, ds)
}

func TestClientCheckFailsFastWhenPeerIsDown(t *testing.T) {
	c, err := NewClient(closedAddr(t), insecure.NewCredentials())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	// A long deadline: the call must fail on the refused connection, not on
	// the deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	_, err = c.Check(ctx, []forward.Item{{Key: "k", Hits: 1, Limit: 1, Window: peerWindow}})

	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err), "Check to a closed port: %v", err)
	assert.NoError(t, ctx.Err(), "Check waited for the deadline")
}

// blockingStore is a store whose Decide waits until release is closed.
type blockingStore struct {
	release chan struct{}
}

func (s blockingStore) Decide(time.Time, forward.Item) forward.Result {
	<-s.release
	return forward.Result{Decision: bucket.Decision{Allowed: true}}
}

func (s blockingStore) Window() time.Duration { return peerWindow }

func TestClientCheckEndsWithContext(t *testing.T) {
	store := blockingStore{release: make(chan struct{})}
	c := serveBufconn(t, store)
	t.Cleanup(func() { close(store.release) }) // runs before the server stops
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()

	_, err := c.Check(ctx, []forward.Item{{Key: "k", Hits: 1, Limit: 1, Window: peerWindow}})

	require.Error(t, err)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "Check past its deadline: %v", err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// shortPeer answers every request with one result too few.
type shortPeer struct {
	peerpb.UnimplementedPeerServer
}

func (shortPeer) Check(_ context.Context, req *peerpb.CheckRequest) (*peerpb.CheckResponse, error) {
	return &peerpb.CheckResponse{Results: make([]*peerpb.Result, len(req.GetItems())-1)}, nil
}

func (p shortPeer) CheckStream(stream peerpb.Peer_CheckStreamServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		resp, _ := p.Check(stream.Context(), req)
		resp.Id = req.GetId()
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func TestClientCheckRejectsWrongResultCount(t *testing.T) {
	lis := bufconn.Listen(1 << 16)
	g := grpc.NewServer()
	peerpb.RegisterPeerServer(g, shortPeer{})
	serveUntilCleanup(t, g, lis)
	c, err := newClient("passthrough:///bufconn", insecure.NewCredentials(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	items := []forward.Item{{Key: "a", Hits: 1, Limit: 1}, {Key: "b", Hits: 1, Limit: 1}}

	ds, err := c.Check(t.Context(), items)

	require.Error(t, err, "Check of 2 items answered with 1 = %v", ds)
	assert.Contains(t, err.Error(), "check 2 items at passthrough:///bufconn: rpc error: code = Internal desc = got 1 results")
}

func TestNewClientNeedsCredentials(t *testing.T) {
	c, err := NewClient("127.0.0.1:1", nil)
	assert.ErrorContains(t, err, "no transport security", "NewClient without creds = %v", c)
}

// BenchmarkClientCheck measures one-item Check round trips over a real
// loopback TCP connection, against the real store, without and with the
// cluster key's mutual TLS; the -unary ones make a unary call per check,
// as the Client did before it kept a stream.
func BenchmarkClientCheck(b *testing.B) {
	for _, bc := range []struct {
		name  string
		key   string
		check func(*Client, context.Context, []forward.Item) ([]forward.Result, error)
	}{
		{"insecure", "", (*Client).Check},
		{"cluster-key", "benchmark cluster key", (*Client).Check},
		{"insecure-unary", "", checkUnary},
		{"cluster-key-unary", "benchmark cluster key", checkUnary},
	} {
		b.Run(bc.name, func(b *testing.B) {
			serverCreds, clientCreds, err := Credentials(bc.key)
			require.NoError(b, err)
			addr := serveTCP(b, serverCreds, newOwner(peerWindow))
			c, err := NewClient(addr, clientCreds)
			require.NoError(b, err)
			b.Cleanup(func() { _ = c.Close() })
			items := []forward.Item{{Key: "bench", Hits: 1, Limit: 1 << 40, Window: peerWindow}}
			_, err = bc.check(c, b.Context(), items) // connect and handshake outside the loop
			require.NoError(b, err)

			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.check(c, b.Context(), items); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
