package peer

import (
	"context"
	"errors"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/peerpb"
)

// peerWindow is the counting window of every store in these tests.
const peerWindow = time.Minute

// peerNow is the clock of every server in these tests: an instant with
// nanoseconds, so truncation to a coarser unit would show.
var peerNow = time.Unix(1_700_000_000, 123_456_789)

// takeCall is one call a scriptedStore saw.
type takeCall struct {
	now   time.Time
	key   string
	hits  int
	limit int
}

// scriptedStore is a store that answers each key with a set Decision (or,
// for a key it has none for, a Decision whose Remaining is the key's number
// after "k", so order shows) and records every call.
type scriptedStore struct {
	window    time.Duration
	decisions map[string]bucket.Decision
	leases    map[string]forward.Result // whole results, lease fields included

	mu    sync.Mutex // guards calls and items
	calls []takeCall
	items []forward.Item
}

func (s *scriptedStore) Decide(now time.Time, it forward.Item) forward.Result {
	s.mu.Lock()
	s.calls = append(s.calls, takeCall{now, it.Key, it.Hits, it.Limit})
	s.items = append(s.items, it)
	s.mu.Unlock()
	if r, ok := s.leases[it.Key]; ok {
		return r
	}
	if d, ok := s.decisions[it.Key]; ok {
		return forward.Result{Decision: d}
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(it.Key, "k"))
	return forward.Result{Decision: bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: n}}
}

func (s *scriptedStore) Window() time.Duration { return s.window }

func (s *scriptedStore) seen() []takeCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]takeCall(nil), s.calls...)
}

// newOwner returns an Owner of a fresh store counting in windows of
// window, as one of 3 members.
func newOwner(window time.Duration) *ownership.Owner {
	return ownership.NewOwner(bucket.New(bucket.Config{Window: window}), func() int { return 3 }, 0)
}

// serveBufconn serves store through the real gRPC codec over an in-memory
// connection and returns a Client for it.
func serveBufconn(t testing.TB, store decider, opts ...grpc.DialOption) *Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	newServer(store, func() time.Time { return peerNow }).Register(g)
	serveUntilCleanup(t, g, lis)
	c, err := newClient("passthrough:///bufconn", insecure.NewCredentials(),
		append(opts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// serveTCP serves store on a real socket on 127.0.0.1 with creds and returns
// its address.
func serveTCP(t testing.TB, creds credentials.TransportCredentials, store decider) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer(grpc.Creds(creds), grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))))
	newServer(store, time.Now).Register(g)
	serveUntilCleanup(t, g, lis)
	return lis.Addr().String()
}

// serveUntilCleanup runs g on lis until the test ends, and waits for it.
func serveUntilCleanup(t testing.TB, g *grpc.Server, lis net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis) // returns nil after Stop
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
}

func TestCheckCarriesEveryField(t *testing.T) {
	store := &scriptedStore{
		window: peerWindow,
		decisions: map[string]bucket.Decision{
			"allowed": {Allowed: true, Limit: 150, Remaining: 149, ResetAt: time.Unix(1_700_000_060, 987_654_321)},
			"refused": {
				Allowed:   false,
				Limit:     2,
				Remaining: 0,
				ResetAt:   time.Unix(1_700_000_059, 1),
				RetryAt:   time.Unix(1_700_000_116, 999_999_999),
			},
			"big":  {Allowed: true, Limit: 1 << 40, Remaining: 1<<40 - 7, ResetAt: time.Unix(4_102_444_800, 5)},
			"zero": {}, // every field zero, times included
		},
	}
	c := serveBufconn(t, store)
	items := []forward.Item{
		{Key: "allowed", Hits: 1, Limit: 150, Window: peerWindow},
		{Key: "refused", Hits: 3, Limit: 2, Window: peerWindow},
		{Key: "big", Hits: 7, Limit: 1 << 40, Window: peerWindow},
		{Key: "zero", Hits: 1, Limit: 1, Window: peerWindow},
	}

	got, err := c.Check(t.Context(), items)
	require.NoError(t, err)

	want := []forward.Result{
		{Decision: store.decisions["allowed"]}, {Decision: store.decisions["refused"]},
		{Decision: store.decisions["big"]}, {Decision: store.decisions["zero"]},
	}
	assert.Equal(t, want, got, "Check(%v)", items)
	assert.Equal(t, []takeCall{
		{peerNow, "allowed", 1, 150},
		{peerNow, "refused", 3, 2},
		{peerNow, "big", 7, 1 << 40},
		{peerNow, "zero", 1, 1},
	}, store.seen(), "Take calls made by the server")
	assert.True(t, got[3].ResetAt.IsZero() && got[3].RetryAt.IsZero(), "a zero time came back as %v / %v", got[3].ResetAt, got[3].RetryAt)
}

// TestCheckCarriesLeases: what a lease asks for and gives back reaches
// the owner exactly, and the grant comes back exactly.
func TestCheckCarriesLeases(t *testing.T) {
	reset := time.Unix(1_700_000_060, 987_654_321)
	store := &scriptedStore{
		window: peerWindow,
		leases: map[string]forward.Result{
			"granted": {Decision: bucket.Decision{Allowed: true, Limit: 1500, Remaining: 1200, ResetAt: reset},
				Granted: 250, LeaseFor: 987_654_321 * time.Nanosecond},
		},
	}
	c := serveBufconn(t, store)
	start := time.Unix(1_700_000_000, 123_456_789)
	items := []forward.Item{
		{Key: "granted", Hits: 1, Limit: 1500, Window: peerWindow, Want: 300},
		{Key: "renewal", Limit: 1500, Window: peerWindow, Want: 1},
		{Key: "back", Limit: 20, Window: peerWindow, GiveBack: 3, GiveBackStart: start},
	}

	got, err := c.Check(t.Context(), items)
	require.NoError(t, err)

	require.Len(t, got, 3)
	assert.Equal(t, store.leases["granted"], got[0])
	store.mu.Lock()
	defer store.mu.Unlock()
	assert.Equal(t, items, store.items, "items as the owner saw them")
}

// TestCheckCarriesSlotsAndCostKeys: a cost counter key, a slot to take
// (its id and end) and one to give back reach the owner exactly, and the
// slot's answer comes back.
func TestCheckCarriesSlotsAndCostKeys(t *testing.T) {
	store := &scriptedStore{
		window: peerWindow,
		leases: map[string]forward.Result{
			"k1": {Decision: bucket.Decision{Allowed: true, Limit: 2}, Slot: 77, SlotsHeld: 2},
		},
	}
	c := serveBufconn(t, store)
	until := time.Unix(1_700_003_600, 5)
	items := []forward.Item{
		{Key: config.CostKey("k1"), Hits: 250, Limit: 6000, Window: peerWindow},
		{Key: "k1", Limit: 2, Window: peerWindow, AcquireSlot: 77, AcquireUntil: until},
		{Key: "k1", Limit: 2, Window: peerWindow, ReleaseSlot: 76},
		{Key: config.CostKey("k1"), Limit: 6000, Window: peerWindow, Refund: 40, GiveBackStart: until},
		{Key: config.CostKey("k1"), Limit: 6000, Window: peerWindow, Read: true},
	}

	got, err := c.Check(t.Context(), items)
	require.NoError(t, err)

	require.Len(t, got, 5)
	assert.Equal(t, uint64(77), got[1].Slot)
	assert.Equal(t, 2, got[1].SlotsHeld)
	store.mu.Lock()
	defer store.mu.Unlock()
	assert.Equal(t, items, store.items, "items as the owner saw them")
}

// TestCheckCarriesReportsAndTheSender: a lease's report of what it has
// left reaches the owner exactly (0 included), an item without one
// reports nothing, and the owner learns which process sent each item from
// the call (Identify), on the stream and on the unary call alike.
func TestCheckCarriesReportsAndTheSender(t *testing.T) {
	start := time.Unix(1_700_000_000, 123_456_789)
	items := []forward.Item{
		{Key: "report", Limit: 20, Window: peerWindow, LeaseID: 7, GiveBackStart: start, Left: 5, Reported: true},
		{Key: "spent", Limit: 20, Window: peerWindow, LeaseID: 8, GiveBackStart: start, Reported: true},
		{Key: "renewal", Limit: 20, Window: peerWindow, LeaseID: 9, Want: 4, Left: 2, Reported: true},
		{Key: "check", Hits: 1, Limit: 20, Window: peerWindow},
	}
	from := forward.Holder{Name: "node-a", Boot: "boot-1"}
	for _, tt := range []struct {
		name string
		opts []grpc.DialOption
		from forward.Holder
	}{{"identified", Identify(from.Name, from.Boot), from}, {"anonymous", nil, forward.Holder{}}} {
		t.Run(tt.name, func(t *testing.T) {
			store := &scriptedStore{window: peerWindow}
			c := serveBufconn(t, store, tt.opts...)
			_, err := c.Check(t.Context(), items)
			require.NoError(t, err)
			c.unaryUntil.Store(time.Now().Add(time.Hour).UnixNano()) // the unary call too
			_, err = c.Check(t.Context(), items[:1])
			require.NoError(t, err)

			want := slices.Clone(items)
			want = append(want, items[0])
			for i := range want {
				want[i].From = tt.from
			}
			store.mu.Lock()
			defer store.mu.Unlock()
			assert.Equal(t, want, store.items, "items as the owner saw them")
		})
	}
}

func TestCheckPreservesOrder(t *testing.T) {
	store := &scriptedStore{window: peerWindow}
	c := serveBufconn(t, store)
	items := make([]forward.Item, forward.MaxCheckItems) // the largest batch allowed
	for i := range items {
		items[i] = forward.Item{Key: "k" + strconv.Itoa(i), Hits: 1, Limit: 10, Window: peerWindow}
	}

	got, err := c.Check(t.Context(), items)
	require.NoError(t, err)
	require.Len(t, got, len(items))
	for i, d := range got {
		if !assert.Equal(t, i, d.Remaining, "Check result %d came from item k%d", i, d.Remaining) {
			break
		}
	}
}

func TestCheckRejectsInvalidBatch(t *testing.T) {
	good := forward.Item{Key: "key", Hits: 1, Limit: 10, Window: peerWindow}
	with := func(f func(*forward.Item)) []forward.Item {
		bad := good
		f(&bad)
		return []forward.Item{good, good, bad} // the bad item last: nothing may be counted
	}
	tests := []struct {
		name    string
		items   []forward.Item
		wantMsg string
	}{
		{"batch too big", make([]forward.Item, forward.MaxCheckItems+1), "10001 items, at most 10000"},
		{"empty key", with(func(it *forward.Item) { it.Key = "" }), "item 2: empty API key"},
		{"key too long", with(func(it *forward.Item) { it.Key = strings.Repeat("x", config.MaxKeyLen+1) }), "item 2: API key is 257 bytes, longer than 256"},
		{"key with a tab", with(func(it *forward.Item) { it.Key = "free\tdemo" }), "item 2: API key has byte 0x9 at 4"},
		{"space in a cost key", with(func(it *forward.Item) { it.Key = "free demo cost" }), "item 2: counter key has an unknown suffix"},
		{"nothing to do", with(func(it *forward.Item) { it.Hits = 0 }), "item 2: hits, want, give_back, acquire_slot, release_slot and refund are all 0, and neither left nor read is set"},
		{"negative refund", with(func(it *forward.Item) { it.Hits, it.Refund = 0, -1 }), "item 2: refund -1: want 0 to 1000000000"},
		{"acquire without an end", with(func(it *forward.Item) { it.Hits, it.AcquireSlot = 0, 7 }), "item 2: acquire_slot without acquire_until_unix_nanos"},
		{"unknown counter suffix", with(func(it *forward.Item) { it.Key = "k1 gpu" }), "item 2: counter key has an unknown suffix"},
		{"negative hits", with(func(it *forward.Item) { it.Hits = -3 }), "item 2: hits -3, want 0, give_back 0, left 0: none may be negative"},
		{"negative want", with(func(it *forward.Item) { it.Want = -1 }), "item 2: hits 1, want -1, give_back 0"},
		{"negative give-back", with(func(it *forward.Item) { it.Hits, it.GiveBack = 0, -5 }), "give_back -5, left 0: none may be negative"},
		{"negative left", with(func(it *forward.Item) { it.Hits, it.Left, it.Reported = 0, -2, true }), "left -2: none may be negative"},
		{"huge want", with(func(it *forward.Item) { it.Want = ownership.MaxLeaseHits + 1 }), "want 1048577, give_back 0, left 0: at most 1048576 each"},
		{"zero limit", with(func(it *forward.Item) { it.Limit = 0 }), "item 2: limit is 0, want at least 1"},
		{"other window", with(func(it *forward.Item) { it.Window = 30 * time.Second }), "item 2: window is 30s, this node's is 1m0s"},
		{"no window", with(func(it *forward.Item) { it.Window = 0 }), "item 2: window is 0s"},
		{"window off by 1ns", with(func(it *forward.Item) { it.Window = peerWindow + 1 }), "item 2: window is 1m0.000000001s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &scriptedStore{window: peerWindow}
			c := serveBufconn(t, store)

			got, err := c.Check(t.Context(), tt.items)

			require.Error(t, err, "Check(%s) = %v, want an error", tt.name, got)
			assert.Equal(t, codes.InvalidArgument, status.Code(err), "Check(%s) error %v", tt.name, err)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Empty(t, store.seen(), "Check(%s) counted items of a refused batch", tt.name)
		})
	}
}

func TestCheckAcceptsLongestKey(t *testing.T) {
	store := &scriptedStore{window: peerWindow}
	c := serveBufconn(t, store)
	key := strings.Repeat("x", config.MaxKeyLen)

	_, err := c.Check(t.Context(), []forward.Item{{Key: key, Hits: 1, Limit: 1, Window: peerWindow}})

	require.NoError(t, err)
	assert.Equal(t, []takeCall{{peerNow, key, 1, 1}}, store.seen())
}

// TestCheckAgainstStoreAdmitsExactlyLimit runs the real bucket store behind
// the server: of limit+5 hits on one key, sent one per call and then as one
// batch on another key, exactly limit are admitted.
func TestCheckAgainstStoreAdmitsExactlyLimit(t *testing.T) {
	const limit = 20
	c := serveBufconn(t, newOwner(peerWindow))

	allowed := 0
	var last bucket.Decision
	for range limit + 5 {
		ds, err := c.Check(t.Context(), []forward.Item{{Key: "one-by-one", Hits: 1, Limit: limit, Window: peerWindow}})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		if ds[0].Allowed {
			allowed++
		}
		last = ds[0].Decision
	}
	assert.Equal(t, limit, allowed, "admitted of %d single-item calls", limit+5)
	assert.False(t, last.Allowed, "last decision %+v", last)
	assert.Equal(t, limit, last.Limit, "last decision %+v", last)
	assert.Equal(t, 0, last.Remaining, "last decision %+v", last)
	assert.True(t, last.RetryAt.After(peerNow), "last decision %+v: RetryAt not after now %v", last, peerNow)
	assert.True(t, last.ResetAt.After(peerNow), "last decision %+v: ResetAt not after now %v", last, peerNow)

	batch := make([]forward.Item, limit+5)
	for i := range batch {
		batch[i] = forward.Item{Key: "batched", Hits: 1, Limit: limit, Window: peerWindow}
	}
	ds, err := c.Check(t.Context(), batch)
	require.NoError(t, err)
	for i, d := range ds {
		assert.Equal(t, i < limit, d.Allowed, "batch item %d: %+v", i, d)
	}
}

func TestNewServerPanicsWithoutStore(t *testing.T) {
	assert.Panics(t, func() { NewServer(nil, time.Now) })
}

func TestCheckStreamAnswersEachRequestWithItsID(t *testing.T) {
	store := &scriptedStore{window: peerWindow}
	h := newPeerHost(t, newServer(store, func() time.Time { return peerNow }))
	conn, err := grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return h.lis.Load().DialContext(ctx) }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	stream, err := peerpb.NewPeerClient(conn).CheckStream(t.Context())
	require.NoError(t, err)

	type want struct {
		id        uint64
		remaining []int64
		code      codes.Code
	}
	steps := []struct {
		req  *peerpb.CheckRequest
		want want
	}{
		{&peerpb.CheckRequest{Id: 7, Items: []*peerpb.Item{
			{Key: "k3", Hits: 1, Limit: 10, WindowNanos: int64(peerWindow)},
			{Key: "k5", Hits: 1, Limit: 10, WindowNanos: int64(peerWindow)},
		}}, want{id: 7, remaining: []int64{3, 5}}},
		{&peerpb.CheckRequest{Id: 2, Items: []*peerpb.Item{
			{Key: "k9", Hits: 1, Limit: 10, WindowNanos: int64(peerWindow)},
		}}, want{id: 2, remaining: []int64{9}}},
		// A batch Check would refuse is answered with the refusal, and the
		// stream goes on.
		{&peerpb.CheckRequest{Id: 8, Items: []*peerpb.Item{
			{Key: "k1", Hits: 0, Limit: 10, WindowNanos: int64(peerWindow)},
		}}, want{id: 8, code: codes.InvalidArgument}},
		{&peerpb.CheckRequest{Id: 1 << 60, Items: []*peerpb.Item{
			{Key: "k4", Hits: 1, Limit: 10, WindowNanos: int64(peerWindow)},
		}}, want{id: 1 << 60, remaining: []int64{4}}},
	}
	for _, st := range steps {
		require.NoError(t, stream.Send(st.req))
	}
	for i, st := range steps {
		resp, err := stream.Recv()
		require.NoError(t, err, "Recv answer %d", i)
		var got want
		got.id, got.code = resp.GetId(), codes.Code(resp.GetErrorCode())
		for _, r := range resp.GetResults() {
			got.remaining = append(got.remaining, r.GetRemaining())
		}
		assert.Equal(t, st.want, got, "answer %d to request id %d", i, st.req.GetId())
		if st.want.code != codes.OK {
			assert.Contains(t, resp.GetErrorMessage(), "item 0: hits, want, give_back, acquire_slot, release_slot and refund are all 0, and neither left nor read is set")
		}
	}
	assert.Len(t, store.seen(), 4, "Take calls: the refused batch must count nothing")
	assert.Equal(t, int64(1), h.streams.Load())
}

func TestServerDrainEndsStreamsSoGracefulStopReturns(t *testing.T) {
	store := newHeldStore()
	srv := newServer(store, nil)
	h := newPeerHost(t, srv)
	c := h.client()
	errc := make(chan error, 1)
	go func() {
		d, err := checkKey(t, c, "held")
		if err == nil && !d.Allowed {
			err = errors.New("refused")
		}
		errc <- err
	}()
	<-store.entered

	srv.Drain()
	// The client ends the stream once its call is answered; until then the
	// server still serves it.
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur == nil
	}, 5*time.Second, time.Millisecond, "the client still sends new calls on the drained stream")
	close(store.release)
	require.NoError(t, <-errc, "Check in flight during Drain")
	// A call after Drain is answered on a stream of its own, drained at once.
	d, err := checkKey(t, c, "k3")
	require.NoError(t, err)
	assert.Equal(t, 3, d.Remaining)

	stopped := make(chan struct{})
	go func() {
		h.g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("GracefulStop still waits for a drained stream")
	}
	_, err = checkKey(t, c, "k4")
	assert.Equal(t, codes.Unavailable, status.Code(err), "Check after the server stopped: %v", err)
}
