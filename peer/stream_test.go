package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// heldStore is a scriptedStore that holds Take for the key "held" until
// release is closed, and says on entered each time such a Take starts.
type heldStore struct {
	scriptedStore
	entered chan struct{} // capacity 16
	release chan struct{}
}

func newHeldStore() *heldStore {
	return &heldStore{
		scriptedStore: scriptedStore{window: peerWindow},
		entered:       make(chan struct{}, 16),
		release:       make(chan struct{}),
	}
}

func (s *heldStore) Decide(now time.Time, it forward.Item) forward.Result {
	if it.Key == "held" {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.scriptedStore.Decide(now, it)
}

// peerHost is a Peer gRPC server on an in-memory listener that can be
// stopped and started again at the same "address", and counts the streams
// opened to it.
type peerHost struct {
	t       *testing.T
	srv     peerpb.PeerServer
	lis     atomic.Pointer[bufconn.Listener]
	streams atomic.Int64

	g    *grpc.Server
	done chan struct{} // closed when g.Serve returns
}

// newPeerHost serves srv until the test ends.
func newPeerHost(t *testing.T, srv peerpb.PeerServer) *peerHost {
	t.Helper()
	h := &peerHost{t: t, srv: srv}
	h.start()
	t.Cleanup(h.stop)
	return h
}

// start serves on a new listener, which new connections then reach.
func (h *peerHost) start() {
	lis := bufconn.Listen(1 << 20)
	h.lis.Store(lis)
	h.g = grpc.NewServer(grpc.StreamInterceptor(
		func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			h.streams.Add(1)
			return handler(srv, ss)
		}))
	peerpb.RegisterPeerServer(h.g, h.srv)
	h.done = make(chan struct{})
	go func(g *grpc.Server, done chan struct{}) {
		defer close(done)
		_ = g.Serve(lis)
	}(h.g, h.done)
}

// stop stops the server at once, breaking every connection to it.
func (h *peerHost) stop() {
	h.g.Stop()
	<-h.done
}

// client returns a Client for the host, closed when the test ends.
func (h *peerHost) client() *Client {
	h.t.Helper()
	c, err := newClient("passthrough:///bufconn", insecure.NewCredentials(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return h.lis.Load().DialContext(ctx)
		}))
	require.NoError(h.t, err)
	h.t.Cleanup(func() { _ = c.Close() })
	return c
}

// item is a valid one-item batch for key.
func item(key string) []forward.Item {
	return []forward.Item{{Key: key, Hits: 1, Limit: 1000, Window: peerWindow}}
}

// checkKey sends a one-item batch for key with a generous deadline. It may
// run on any goroutine.
func checkKey(t *testing.T, c *Client, key string) (bucket.Decision, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ds, err := c.Check(ctx, item(key))
	if err != nil {
		return bucket.Decision{}, err
	}
	if len(ds) != 1 {
		return bucket.Decision{}, fmt.Errorf("Check(%s) returned %d decisions, want 1", key, len(ds))
	}
	return ds[0].Decision, nil
}

// receiveGoroutines returns how many stream receive goroutines of any
// Client are running.
func receiveGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "peer.(*Client).receive(")
}

func TestClientSendsEveryCheckOnOneStream(t *testing.T) {
	store := &scriptedStore{window: peerWindow}
	h := newPeerHost(t, newServer(store, nil))
	c := h.client()

	for i := range 5 {
		d, err := checkKey(t, c, "k"+strconv.Itoa(i))
		require.NoError(t, err)
		assert.Equal(t, i, d.Remaining, "Check(k%d) = %+v", i, d)
	}
	// A refused batch fails its call only.
	_, err := c.Check(t.Context(), []forward.Item{{Key: "k1", Hits: 1, Limit: 0, Window: peerWindow}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "Check with limit 0: %v", err)
	d, err := checkKey(t, c, "k42")
	require.NoError(t, err)
	assert.Equal(t, 42, d.Remaining)

	assert.Equal(t, int64(1), h.streams.Load(), "streams opened for 7 checks")
}

func TestClientConcurrentChecksGetTheirOwnAnswers(t *testing.T) {
	store := &scriptedStore{window: peerWindow}
	h := newPeerHost(t, newServer(store, nil))
	c := h.client()

	const callers, each = 32, 50
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range each {
				n := g*each + i
				ds, err := c.Check(t.Context(), []forward.Item{
					{Key: "k" + strconv.Itoa(n), Hits: 1, Limit: 10, Window: peerWindow},
					{Key: "k" + strconv.Itoa(n+1_000_000), Hits: 1, Limit: 10, Window: peerWindow},
				})
				if !assert.NoError(t, err) || !assert.Len(t, ds, 2) {
					return
				}
				assert.Equal(t, []int{n, n + 1_000_000}, []int{ds[0].Remaining, ds[1].Remaining},
					"Check(k%d, k%d) answered for other keys", n, n+1_000_000)
			}
		})
	}
	wg.Wait()

	assert.Len(t, store.seen(), 2*callers*each)
	assert.Equal(t, int64(1), h.streams.Load(), "streams opened")
}

func TestClientCheckEndsAtDeadlineAndDropsTheLateAnswer(t *testing.T) {
	store := newHeldStore()
	h := newPeerHost(t, newServer(store, nil))
	c := h.client()
	_, err := checkKey(t, c, "k1") // open the stream
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	ds, err := c.Check(ctx, item("held"))
	took := time.Since(start)

	require.Error(t, err, "Check(held) = %v, want the deadline", ds)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "Check(held) error %v", err)
	assert.Less(t, took, 5*time.Second, "Check(held) returned after")
	<-store.entered // the server has it, and answers once released

	// The server answers in order, so the late answer to "held" comes
	// first; it must be dropped, not taken for the next call's.
	close(store.release)
	d, err := checkKey(t, c, "k7")
	require.NoError(t, err)
	assert.Equal(t, 7, d.Remaining, "Check(k7) after a late answer = %+v", d)
	assert.Equal(t, int64(1), h.streams.Load(), "a timed-out call must not cost the stream")
}

func TestClientCheckCanceled(t *testing.T) {
	store := newHeldStore()
	h := newPeerHost(t, newServer(store, nil))
	t.Cleanup(func() { close(store.release) }) // before the server stops
	c := h.client()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Check(ctx, item("held"))
		errc <- err
	}()
	<-store.entered

	cancel()

	err := <-errc
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, codes.Canceled, status.Code(err), "Check error %v", err)
}

func TestClientFailsWaitingCallsAtOnceWhenStreamBreaks(t *testing.T) {
	store := newHeldStore()
	h := newPeerHost(t, newServer(store, nil))
	t.Cleanup(func() { close(store.release) }) // lets the old handler end
	before := receiveGoroutines()
	c := h.client()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	const waiting = 4
	errs := make(chan error, waiting)
	for i := range waiting {
		key := "held"
		if i > 0 {
			key = "k" + strconv.Itoa(i) // queued on the stream behind "held"
		}
		go func() {
			_, err := c.Check(ctx, item(key))
			errs <- err
		}()
		if i == 0 {
			<-store.entered
		}
	}
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur != nil && len(c.cur.pending) == waiting
	}, 5*time.Second, time.Millisecond, "not every call is waiting on the stream")

	h.stop() // the peer dies with every call unanswered
	for range waiting {
		err := <-errs
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err), "Check error %v", err)
	}
	assert.NoError(t, ctx.Err(), "the calls waited for their deadline")

	// The peer comes back: a later call opens a new stream.
	h.start()
	require.Eventually(t, func() bool {
		d, err := checkKey(t, c, "k5")
		return err == nil && d.Remaining == 5
	}, 10*time.Second, 10*time.Millisecond, "Check never succeeded after the peer came back")
	assert.Equal(t, int64(2), h.streams.Load(), "streams opened over the restart")
	assert.Equal(t, before+1, receiveGoroutines(), "receive goroutines: the broken stream's must have ended")
}

func TestClientCloseEndsStreamAndGoroutines(t *testing.T) {
	store := newHeldStore()
	h := newPeerHost(t, newServer(store, nil))
	t.Cleanup(func() { close(store.release) })
	before := receiveGoroutines()
	c := h.client()
	_, err := checkKey(t, c, "k1")
	require.NoError(t, err)
	assert.Equal(t, before+1, receiveGoroutines(), "receive goroutines with one stream open")
	errc := make(chan error, 1)
	go func() {
		_, err := checkKey(t, c, "held")
		errc <- err
	}()
	<-store.entered

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()

	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	err = <-errc
	assert.Equal(t, codes.Canceled, status.Code(err), "Check in flight during Close: %v", err)
	assert.Equal(t, before, receiveGoroutines(), "receive goroutines after Close")
	_, err = checkKey(t, c, "k2")
	assert.Equal(t, codes.Canceled, status.Code(err), "Check after Close: %v", err)
}

// unaryOnlyPeer is a peer from before CheckStream: it serves Check only.
type unaryOnlyPeer struct {
	peerpb.UnimplementedPeerServer
	srv   *Server
	calls atomic.Int64
}

func (p *unaryOnlyPeer) Check(ctx context.Context, req *peerpb.CheckRequest) (*peerpb.CheckResponse, error) {
	p.calls.Add(1)
	return p.srv.Check(ctx, req)
}

func TestClientFallsBackToUnaryForOlderPeer(t *testing.T) {
	store := &scriptedStore{window: peerWindow}
	old := &unaryOnlyPeer{srv: newServer(store, nil)}
	h := newPeerHost(t, old)
	c := h.client()

	for i := range 3 {
		d, err := checkKey(t, c, "k"+strconv.Itoa(i))
		require.NoError(t, err, "Check %d on a peer without CheckStream", i)
		assert.Equal(t, i, d.Remaining)
	}
	assert.Equal(t, int64(3), old.calls.Load(), "unary calls")
	assert.Equal(t, int64(1), h.streams.Load(), "streams tried")
	assert.Len(t, store.seen(), 3)
}

// deafPeer opens streams but never reads from them.
type deafPeer struct {
	peerpb.UnimplementedPeerServer
}

func (deafPeer) CheckStream(stream peerpb.Peer_CheckStreamServer) error {
	<-stream.Context().Done()
	return nil
}

func TestClientCheckEndsAtDeadlineWhenSendBlocks(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	// A fixed window: gRPC cannot grow it, so the client soon runs out of
	// flow control and its Send blocks.
	g := grpc.NewServer(grpc.InitialWindowSize(1<<16), grpc.InitialConnWindowSize(1<<16))
	peerpb.RegisterPeerServer(g, deafPeer{})
	serveUntilCleanup(t, g, lis)
	c, err := newClient("passthrough:///bufconn", insecure.NewCredentials(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	big := make([]forward.Item, 2000) // about 500 kB
	for i := range big {
		big[i] = forward.Item{Key: strings.Repeat("x", 200) + strconv.Itoa(i), Hits: 1, Limit: 1, Window: peerWindow}
	}

	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		start := time.Now()
		_, err := c.Check(ctx, big)
		took := time.Since(start)
		cancel()
		require.Error(t, err, "Check %d to a peer that never reads", i)
		assert.True(t, errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Unavailable,
			"Check %d error %v, want the deadline or a broken stream", i, err)
		assert.Less(t, took, 5*time.Second, "Check %d returned after", i)
	}
}
