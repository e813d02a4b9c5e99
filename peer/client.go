package peer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/peerpb"
)

// Client is a Peer reached over gRPC. It holds one connection for its whole
// life, which gRPC opens on the first call and reopens after a failure, and
// on it one CheckStream that carries every batch as one message each way,
// opened on the first Check and again after it breaks. Calls share both, so
// a Client is safe for concurrent use.
//
// A call does not wait for a broken connection to mend: while the last
// attempt to connect has failed, calls fail at once with codes.Unavailable
// (only a call that finds a connection attempt under way waits for it).
// When the stream breaks, every call waiting on it fails at once, and the
// next one opens a new stream. The caller's ctx is the only deadline, so
// give it one.
//
// A peer too old to serve CheckStream answers it with codes.Unimplemented;
// the batch is then sent as a unary Check call, and so are the batches of
// the next minute, before the stream is tried again.
type Client struct {
	addr    string
	conn    *grpc.ClientConn
	rpc     peerpb.PeerClient
	ctx     context.Context // parent of every stream; cancelled by Close
	cancel  context.CancelCauseFunc
	recvs   sync.WaitGroup // the streams' receive goroutines
	waiters sync.Pool      // of *waiter
	// unaryUntil is when to try a stream again, in Unix nanoseconds, after
	// the peer said it has none; 0: use the stream.
	unaryUntil atomic.Int64

	// mu guards cur, opening, nextID and closed, and the pending calls and
	// draining flag of every stream.
	mu      sync.Mutex
	cur     *stream  // where new calls go; nil: open a stream first
	opening *opening // the attempt to open one under way, if any
	nextID  uint64   // the last request id used
	closed  bool
}

var _ forward.Peer = (*Client)(nil)

// NewClient returns a Client for the node whose gRPC server listens at addr
// ("host:port"; a host name is looked up through DNS), secured by creds (see
// Credentials). It does no I/O: it fails only on an empty or malformed
// address or nil creds. Close it to free the connection.
func NewClient(addr string, creds credentials.TransportCredentials) (*Client, error) {
	return newClient(addr, creds)
}

// newClient is NewClient with extra options, such as a dialer for tests.
func newClient(addr string, creds credentials.TransportCredentials, extra ...grpc.DialOption) (*Client, error) {
	if addr == "" {
		return nil, errors.New("new client: empty address") // gRPC would take it and fail every call
	}
	// Reconnect quickly, since peers restart often: the first retry comes
	// after about 100 ms and the longest wait is 2 s, where gRPC's defaults
	// are 1 s and 120 s.
	reconnect := grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   2 * time.Second,
		},
		MinConnectTimeout: time.Second,
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(reconnect),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true,
		}),
	}, extra...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("new client for %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &Client{addr: addr, conn: conn, rpc: peerpb.NewPeerClient(conn), ctx: ctx, cancel: cancel}
	c.waiters.New = func() any { return &waiter{reply: make(chan reply, 1)} }
	return c, nil
}

// Connect starts connecting in the background, if not connected already,
// so the first forwarded check does not pay for the TCP and HTTP/2 (and
// TLS) handshakes inside its short deadline. It does not wait. (Opening the
// stream costs no round trip, so the first Check does that.)
func (c *Client) Connect() { c.conn.Connect() }

// Check sends items to the peer as one message on the Client's stream and
// returns its decisions, one per item in order. The error, if any, wraps a
// gRPC status, so status.Code(err) reports why: codes.Unavailable when the
// peer cannot be reached or the stream broke, codes.DeadlineExceeded or
// codes.Canceled when ctx ended first (errors.Is then matches ctx.Err()
// too), codes.InvalidArgument when the peer refused the batch, and
// codes.Internal when the answer does not match the request. An empty
// batch returns at once. Keys must be valid UTF-8 (config.CheckKey keys
// are): a message that cannot be encoded would end the stream, failing the
// other calls on it.
//
// When ctx ends first, the items may still be counted at the peer; its late
// answer is dropped.
func (c *Client) Check(ctx context.Context, items []forward.Item) ([]forward.Result, error) {
	if len(items) == 0 {
		return nil, nil
	}
	req := newRequest(items)
	if until := c.unaryUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return c.checkUnary(ctx, req)
	}
	w := c.waiters.Get().(*waiter)
	r, err := c.roundTrip(ctx, w, req)
	c.waiters.Put(w) // roundTrip leaves w empty
	if status.Code(err) == codes.Unimplemented {
		return c.checkUnary(ctx, req) // an older peer, which counted nothing
	}
	if err != nil {
		return nil, fmt.Errorf("check %d items at %s: %w", len(items), c.addr, err)
	}
	return decodeResponse(r, len(items), c.addr)
}

// Ping asks the peer to answer a call that counts nothing: whether it is
// reachable at all (ownership.Pinger). It is a unary Check of no items.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.rpc.Check(ctx, &peerpb.CheckRequest{}); err != nil {
		return fmt.Errorf("ping %s: %w", c.addr, err)
	}
	return nil
}

var _ ownership.Pinger = (*Client)(nil)

// checkUnary is Check as one unary call, for a peer without CheckStream.
func (c *Client) checkUnary(ctx context.Context, req *peerpb.CheckRequest) ([]forward.Result, error) {
	resp, err := c.rpc.Check(ctx, req)
	if err != nil && ctx.Err() != nil {
		err = contextError{ctx.Err()} // so errors.Is matches, as on the stream
	}
	if err != nil {
		return nil, fmt.Errorf("check %d items at %s: %w", len(req.Items), c.addr, err)
	}
	return decodeResponse(resp, len(req.Items), c.addr)
}

// newRequest puts items on the wire.
func newRequest(items []forward.Item) *peerpb.CheckRequest {
	wire := make([]peerpb.Item, len(items)) // one allocation for the batch
	req := &peerpb.CheckRequest{Items: make([]*peerpb.Item, len(items))}
	var lefts []int64 // the reported Lefts, allocated if any
	for i, it := range items {
		w := &wire[i]
		w.Key = it.Key
		w.Hits = int64(it.Hits)
		w.Limit = int64(it.Limit)
		w.WindowNanos = int64(it.Window)
		w.Want = int64(it.Want)
		w.GiveBack = int64(it.GiveBack)
		w.LeaseId = it.LeaseID
		w.GiveBackNonce = it.GiveBackNonce
		w.DeadlineUnixNanos = unixNanos(it.Deadline)
		w.GiveBackStartUnixNanos = unixNanos(it.GiveBackStart)
		w.AcquireSlot = it.AcquireSlot
		w.AcquireUntilUnixNanos = unixNanos(it.AcquireUntil)
		w.ReleaseSlot = it.ReleaseSlot
		w.Refund = int64(it.Refund)
		w.Read = it.Read
		w.SlotHolder = it.SlotHolder
		w.WantSlots = int64(it.WantSlots)
		if it.Reported {
			if lefts == nil {
				lefts = make([]int64, len(items))
			}
			lefts[i] = int64(it.Left)
			w.Left = &lefts[i]
		}
		req.Items[i] = w
	}
	return req
}

// decodeResponse returns the decisions in resp, the answer to n items from
// the peer at addr, or the error it carries.
func decodeResponse(resp *peerpb.CheckResponse, n int, addr string) ([]forward.Result, error) {
	if code := codes.Code(resp.GetErrorCode()); code != codes.OK {
		return nil, fmt.Errorf("check %d items at %s: %w", n, addr, status.Error(code, resp.GetErrorMessage()))
	}
	results := resp.GetResults()
	if len(results) != n {
		return nil, fmt.Errorf("check %d items at %s: %w", n, addr, status.Errorf(codes.Internal, "got %d results", len(results)))
	}
	ds := make([]forward.Result, len(results))
	for i, r := range results {
		ds[i] = decodeResult(r)
	}
	return ds, nil
}

// Close ends the stream and closes the connection, and waits for the
// Client's goroutines to end. Calls in flight fail with codes.Canceled, and
// so do later ones.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cur = nil
	c.mu.Unlock()
	c.cancel(errClientClosed) // ends every stream, and so its receive goroutine
	err := c.conn.Close()
	c.recvs.Wait()
	if err != nil {
		return fmt.Errorf("close client for %s: %w", c.addr, err)
	}
	return nil
}

// Handoff gives the peer counts of keys it owns now, which it adds to its
// own; see handoff.Mover. ctx bounds the call.
func (c *Client) Handoff(ctx context.Context, from string, window time.Duration, counts []bucket.Count) error {
	if _, err := c.rpc.Handoff(ctx, newCounts(from, window, counts)); err != nil {
		return fmt.Errorf("hand %d counts to %s: %w", len(counts), c.addr, err)
	}
	return nil
}

// Backup gives the peer copies of the counts of from, whose process has
// boot id boot; see handoff.Mover.
func (c *Client) Backup(ctx context.Context, from, boot string, window time.Duration, counts []bucket.Count) error {
	req := newCounts(from, window, counts)
	req.Boot = boot
	if _, err := c.rpc.Backup(ctx, req); err != nil {
		return fmt.Errorf("back up %d counts at %s: %w", len(counts), c.addr, err)
	}
	return nil
}

// newCounts puts counts on the wire.
func newCounts(from string, window time.Duration, counts []bucket.Count) *peerpb.Counts {
	wire := make([]peerpb.Count, len(counts)) // one allocation for the batch
	req := &peerpb.Counts{From: from, WindowNanos: int64(window), Counts: make([]*peerpb.Count, len(counts))}
	for i, c := range counts {
		w := &wire[i]
		w.Key = c.Key
		w.StartUnixNanos = unixNanos(c.Start)
		w.Previous = c.Previous
		w.Current = c.Current
		req.Counts[i] = w
	}
	return req
}
