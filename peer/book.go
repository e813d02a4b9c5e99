package peer

import (
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tierlimit/tierlimit/forward"
)

// Book is the one record of this node's peers: for each member name, the
// gRPC address membership reports for it and the Client that reaches it
// there. It is the Router's PeerSource. It is safe for concurrent use.
type Book struct {
	creds credentials.TransportCredentials
	opts  []grpc.DialOption

	// mu guards peers and closed.
	mu     sync.RWMutex
	peers  map[string]*Client // by member name; a Client knows its address
	closed bool
}

var _ forward.PeerSource = (*Book)(nil)

// NewBook returns an empty Book whose Clients are secured by creds (see
// Credentials) and made with the extra dial options opts, if any (tests
// pass a dialer that injects faults).
func NewBook(creds credentials.TransportCredentials, opts ...grpc.DialOption) *Book {
	return &Book{creds: creds, opts: opts, peers: make(map[string]*Client)}
}

// Peer returns the Client for the member called name, if the Book has one.
// It does no I/O.
func (b *Book) Peer(name string) (forward.Peer, bool) {
	b.mu.RLock()
	c, ok := b.peers[name]
	b.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return c, true
}

// Set makes addrs, member name → gRPC address, the whole set of peers. A
// new peer gets a Client, which starts connecting at once so that the first
// forward does not pay for the handshakes. It returns the names of the
// peers that are gone or now have another address (stale), and release,
// which closes their old Clients. Whoever keeps state per peer (the Router's
// batchers) must drop it for the stale names before calling release, so
// that nothing is left holding a closed Client. A name with an address that
// cannot be dialled (empty, malformed) is left out. After Close, Set does
// nothing.
func (b *Book) Set(addrs map[string]string) (stale []string, release func()) {
	var old, fresh []*Client
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, func() {}
	}
	for name, c := range b.peers {
		if addrs[name] != c.addr {
			stale = append(stale, name)
			old = append(old, c)
			delete(b.peers, name)
		}
	}
	for name, addr := range addrs {
		if _, ok := b.peers[name]; ok {
			continue
		}
		c, err := newClient(addr, b.creds, b.opts...) // no I/O, so holding mu is cheap
		if err != nil {
			continue
		}
		b.peers[name] = c
		fresh = append(fresh, c)
	}
	b.mu.Unlock()
	for _, c := range fresh {
		c.Connect()
	}
	return stale, func() { _ = closeAll(old) }
}

// Close closes every Client; the Book is empty afterwards, and Set does
// nothing. It returns the errors of the Clients that failed to close,
// joined.
func (b *Book) Close() error {
	b.mu.Lock()
	all := make([]*Client, 0, len(b.peers))
	for _, c := range b.peers {
		all = append(all, c)
	}
	clear(b.peers)
	b.closed = true
	b.mu.Unlock()
	return closeAll(all)
}

func closeAll(cs []*Client) error {
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
