package ownership

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tierlimit/tierlimit/bucket"
	peerpb "github.com/tierlimit/tierlimit/proto"
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

	_, err = c.Check(ctx, []Item{{Key: "k", Hits: 1, Limit: 1, Window: peerWindow}})

	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err), "Check to a closed port: %v", err)
	assert.NoError(t, ctx.Err(), "Check waited for the deadline")
}

// blockingStore is a store whose Take waits until release is closed.
type blockingStore struct {
	release chan struct{}
}

func (s blockingStore) Take(time.Time, string, int, int) bucket.Decision {
	<-s.release
	return bucket.Decision{Allowed: true}
}

func (s blockingStore) Window() time.Duration { return peerWindow }

func TestClientCheckEndsWithContext(t *testing.T) {
	store := blockingStore{release: make(chan struct{})}
	c := serveBufconn(t, store)
	t.Cleanup(func() { close(store.release) }) // runs before the server stops
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()

	_, err := c.Check(ctx, []Item{{Key: "k", Hits: 1, Limit: 1, Window: peerWindow}})

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
	items := []Item{{Key: "a", Hits: 1, Limit: 1}, {Key: "b", Hits: 1, Limit: 1}}

	ds, err := c.Check(t.Context(), items)

	require.Error(t, err, "Check of 2 items answered with 1 = %v", ds)
	assert.Contains(t, err.Error(), "check 2 items at passthrough:///bufconn: got 1 results")
}

func TestClientsGet(t *testing.T) {
	p := NewClients(insecure.NewCredentials())
	t.Cleanup(func() { _ = p.Close() })

	a1, err := p.Get("a", "127.0.0.1:1001")
	require.NoError(t, err)
	again, err := p.Get("a", "127.0.0.1:1001")
	require.NoError(t, err)
	assert.Same(t, a1, again, "Get with the same address made a new client")

	b, err := p.Get("b", "127.0.0.1:1001")
	require.NoError(t, err)
	assert.NotSame(t, a1, b, "two peers at one address share a client")

	a2, err := p.Get("a", "127.0.0.1:1002")
	require.NoError(t, err)
	assert.NotSame(t, a1, a2, "Get with a new address returned the old client")
	assert.Equal(t, connectivity.Shutdown, a1.conn.GetState(), "the client for the old address is still open")
	assert.NotEqual(t, connectivity.Shutdown, a2.conn.GetState())

	p.Remove("a")
	assert.Equal(t, connectivity.Shutdown, a2.conn.GetState(), "Remove left the client open")
	a3, err := p.Get("a", "127.0.0.1:1002")
	require.NoError(t, err)
	assert.NotSame(t, a2, a3, "Get after Remove returned the removed client")
	p.Remove("never-added") // no-op

	require.NoError(t, p.Close())
	assert.Equal(t, connectivity.Shutdown, a3.conn.GetState(), "Close left a client open")
	assert.Equal(t, connectivity.Shutdown, b.conn.GetState(), "Close left a client open")
	_, err = p.Get("a", "127.0.0.1:1002")
	assert.ErrorContains(t, err, "pool closed")
}

func TestClientsGetRejectsBadAddress(t *testing.T) {
	p := NewClients(insecure.NewCredentials())
	t.Cleanup(func() { _ = p.Close() })

	for _, addr := range []string{"", "%zz"} {
		c, err := p.Get("a", addr)
		assert.ErrorContains(t, err, "client for peer a", "Get(a, %q) = %v", addr, c)
	}
}

func TestNewClientNeedsCredentials(t *testing.T) {
	c, err := NewClient("127.0.0.1:1", nil)
	assert.ErrorContains(t, err, "no transport security", "NewClient without creds = %v", c)
}

func TestClientsConcurrentGet(t *testing.T) {
	p := NewClients(insecure.NewCredentials())
	t.Cleanup(func() { _ = p.Close() })
	addrs := []string{"127.0.0.1:1001", "127.0.0.1:1002"}

	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 50 {
				name := []string{"a", "b", "c"}[(i+j)%3]
				_, err := p.Get(name, addrs[(i+j)%2])
				if assert.NoError(t, err) && j%5 == 0 {
					p.Remove(name)
				}
			}
		})
	}
	wg.Wait()

	last, err := p.Get("a", addrs[0])
	require.NoError(t, err)
	again, err := p.Get("a", addrs[0])
	require.NoError(t, err)
	assert.Same(t, last, again)
}

// BenchmarkClientCheck measures one-item Check round trips over a real
// loopback TCP connection, against the real store, without and with the
// cluster key's mutual TLS; the -unary ones make a unary call per check,
// as the Client did before it kept a stream.
func BenchmarkClientCheck(b *testing.B) {
	for _, bc := range []struct {
		name  string
		key   string
		check func(*Client, context.Context, []Item) ([]bucket.Decision, error)
	}{
		{"insecure", "", (*Client).Check},
		{"cluster-key", "benchmark cluster key", (*Client).Check},
		{"insecure-unary", "", checkUnary},
		{"cluster-key-unary", "benchmark cluster key", checkUnary},
	} {
		b.Run(bc.name, func(b *testing.B) {
			serverCreds, clientCreds, err := Credentials(bc.key)
			require.NoError(b, err)
			addr := serveTCP(b, serverCreds, bucket.New(bucket.Config{Window: peerWindow}))
			c, err := NewClient(addr, clientCreds)
			require.NoError(b, err)
			b.Cleanup(func() { _ = c.Close() })
			items := []Item{{Key: "bench", Hits: 1, Limit: 1 << 40, Window: peerWindow}}
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

func TestClientCheckRefusesInvalidUTF8Key(t *testing.T) {
	store := &scriptedStore{window: peerWindow}
	c := serveBufconn(t, store)

	ds, err := c.Check(t.Context(), []Item{{Key: "bad\xff", Hits: 1, Limit: 1, Window: peerWindow}})

	require.Error(t, err, "Check with an invalid UTF-8 key = %v", ds)
	assert.Equal(t, codes.Internal, status.Code(err), "Check error: %v", err)
	assert.Empty(t, store.seen(), "an invalid key was counted")
}
