package main

import (
	"net"
	"sync"

	"github.com/tierlimit/tierlimit/cluster"
	"github.com/tierlimit/tierlimit/ownership"
)

// peerBook maps member names to their gRPC addresses, as gossip reports
// them, and hands the Router a Client for each. It is safe for concurrent
// use.
type peerBook struct {
	clients *ownership.Clients

	// mu guards addrs.
	mu    sync.RWMutex
	addrs map[string]string
}

func newPeerBook(c *ownership.Clients) *peerBook {
	return &peerBook{clients: c, addrs: make(map[string]string)}
}

// Peer returns the Client for the member called name, if it is alive and
// published a gRPC address. It does no I/O.
func (b *peerBook) Peer(name string) (ownership.Peer, bool) {
	b.mu.RLock()
	addr, ok := b.addrs[name]
	b.mu.RUnlock()
	if !ok {
		return nil, false
	}
	c, err := b.clients.Get(name, addr)
	if err != nil {
		return nil, false
	}
	return c, true
}

// set replaces the address book with the alive members other than self,
// starts connecting to new ones, and returns the names that are no longer
// there (gone) and those that now have another address (moved). The
// Router's batchers for both hold a stale Client and must be dropped.
func (b *peerBook) set(alive []cluster.Member, self string) (gone, moved []string) {
	next := make(map[string]string, len(alive))
	for _, m := range alive {
		if m.Name == self || m.GRPCAddr == "" {
			continue
		}
		next[m.Name] = peerGRPCAddr(m)
	}
	b.mu.Lock()
	for name, addr := range b.addrs {
		switch now, ok := next[name]; {
		case !ok:
			gone = append(gone, name)
		case now != addr:
			moved = append(moved, name)
		}
	}
	var fresh []string
	for name, addr := range next {
		if b.addrs[name] != addr {
			fresh = append(fresh, name)
		}
	}
	b.addrs = next
	b.mu.Unlock()
	for _, name := range fresh {
		if c, err := b.clients.Get(name, next[name]); err == nil {
			c.Connect() // warm the connection before the first forward needs it
		}
	}
	return gone, moved
}

// peerGRPCAddr returns where to dial m: its published gRPC address, with
// the IP of its gossip address in front when it published only ":port".
func peerGRPCAddr(m cluster.Member) string {
	host, port, err := net.SplitHostPort(m.GRPCAddr)
	if err != nil || host != "" {
		return m.GRPCAddr
	}
	gossipHost, _, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return m.GRPCAddr
	}
	return net.JoinHostPort(gossipHost, port)
}
