package ownership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/tierlimit/tierlimit/bucket"
	peerpb "github.com/tierlimit/tierlimit/proto"
)

// Client is a Peer reached over gRPC. It holds one connection for its whole
// life, which gRPC opens on the first call and reopens after a failure; calls
// share it, so a Client is safe for concurrent use.
//
// A call does not wait for a broken connection to mend: while the last
// attempt to connect has failed, calls fail at once with codes.Unavailable
// (only a call that finds a connection attempt under way waits for it).
// The caller's ctx is the only deadline, so give it one.
type Client struct {
	addr string
	conn *grpc.ClientConn
	rpc  peerpb.PeerClient
}

var _ Peer = (*Client)(nil)

// NewClient returns a Client for the node whose gRPC server listens at addr
// ("host:port"; a host name is looked up through DNS), secured by creds (see
// Credentials). It does no I/O: it fails only on an empty or malformed
// address or nil creds.
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
	}, extra...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("new client for %s: %w", addr, err)
	}
	return &Client{addr: addr, conn: conn, rpc: peerpb.NewPeerClient(conn)}, nil
}

// Connect starts connecting in the background, if not connected already,
// so the first forwarded check does not pay for the TCP and HTTP/2 (and
// TLS) handshakes inside its short deadline. It does not wait.
func (c *Client) Connect() { c.conn.Connect() }

// Check sends items to the peer in one call and returns its decisions, one
// per item in order. The error, if any, wraps the gRPC status, so
// status.Code(err) reports why: codes.Unavailable when the peer cannot be
// reached, codes.DeadlineExceeded when ctx ended first, codes.InvalidArgument
// when the peer refused the batch. An empty batch returns at once.
func (c *Client) Check(ctx context.Context, items []Item) ([]bucket.Decision, error) {
	if len(items) == 0 {
		return nil, nil
	}
	wire := make([]peerpb.Item, len(items)) // one allocation for the batch
	req := &peerpb.CheckRequest{Items: make([]*peerpb.Item, len(items))}
	for i, it := range items {
		w := &wire[i]
		w.Key = it.Key
		w.Hits = int64(it.Hits)
		w.Limit = int64(it.Limit)
		w.WindowNanos = int64(it.Window)
		req.Items[i] = w
	}
	resp, err := c.rpc.Check(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("check %d items at %s: %w", len(items), c.addr, err)
	}
	results := resp.GetResults()
	if len(results) != len(items) {
		return nil, fmt.Errorf("check %d items at %s: got %d results", len(items), c.addr, len(results))
	}
	ds := make([]bucket.Decision, len(results))
	for i, r := range results {
		ds[i] = decodeResult(r)
	}
	return ds, nil
}

// Close closes the connection; calls in flight fail with codes.Canceled, and
// so do later ones.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close client for %s: %w", c.addr, err)
	}
	return nil
}

// Clients holds one Client per peer name, made on first use and kept until
// the peer leaves or moves. It is safe for concurrent use. The zero value is
// not usable; call NewClients.
type Clients struct {
	creds credentials.TransportCredentials
	opts  []grpc.DialOption

	// mu guards byName and closed.
	mu     sync.Mutex
	byName map[string]*Client
	closed bool
}

// NewClients returns an empty pool whose Clients are secured by creds and
// made with the extra dial options opts, if any (tests pass a dialer that
// injects faults).
func NewClients(creds credentials.TransportCredentials, opts ...grpc.DialOption) *Clients {
	return &Clients{creds: creds, opts: opts, byName: make(map[string]*Client)}
}

// Get returns the Client for the peer called name at addr. It returns the
// one it holds if that one is for addr; otherwise it makes a new one, and if
// the peer had moved, closes the Client for the old address, failing the
// calls still in flight on it. It fails only if NewClient would, or if the
// pool is closed.
func (p *Clients) Get(name, addr string) (*Client, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("client for peer %s: pool closed", name)
	}
	old := p.byName[name]
	if old != nil && old.addr == addr {
		p.mu.Unlock()
		return old, nil
	}
	c, err := newClient(addr, p.creds, p.opts...) // no I/O, so holding mu is cheap
	if err != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("client for peer %s: %w", name, err)
	}
	p.byName[name] = c
	p.mu.Unlock()
	if old != nil {
		_ = old.Close() // closing only frees the old connection; nothing to report
	}
	return c, nil
}

// Remove closes and forgets the Client for the peer called name, if any.
// Call it when the peer leaves the cluster.
func (p *Clients) Remove(name string) {
	p.mu.Lock()
	c := p.byName[name]
	delete(p.byName, name)
	p.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// Close closes every Client in the pool; Get fails afterwards. It returns
// the errors of the Clients that failed to close, joined.
func (p *Clients) Close() error {
	p.mu.Lock()
	all := p.byName
	p.byName = make(map[string]*Client)
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, c := range all {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
