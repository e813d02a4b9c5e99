// Package clustertest helps test code that runs cluster nodes: it cuts
// gossip traffic between groups of nodes to simulate a network partition.
//
// Give each node its own Transport from one Partition, through the
// memberlist config passed to cluster.New:
//
//	p := clustertest.NewPartition()
//	tr, err := p.NewTransport("127.0.0.1")
//	mc := cluster.TestMemberlistConfig()
//	mc.Transport = tr
//	node, err := cluster.New(cluster.Config{Memberlist: mc, ...})
//	...
//	p.Block([]string{a.GossipAddr()}, []string{b.GossipAddr(), c.GossipAddr()})
//	p.Heal()
package clustertest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrBlocked is returned by a Transport's dial to an address that its
// Partition cuts off.
var ErrBlocked = errors.New("clustertest: blocked by partition")

// Partition decides which gossip addresses can reach which. The zero value
// is not usable; call NewPartition. It is safe for concurrent use.
type Partition struct {
	// mu guards cut.
	mu sync.Mutex
	// cut holds each blocked (from, to) pair of gossip addresses.
	cut map[[2]string]bool
}

// NewPartition returns a Partition that blocks nothing.
func NewPartition() *Partition {
	return &Partition{cut: make(map[[2]string]bool)}
}

// Block cuts traffic both ways between every gossip address ("ip:port") in
// a and every one in b, adding to what is already cut.
func (p *Partition) Block(a, b []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			p.cut[[2]string{x, y}] = true
			p.cut[[2]string{y, x}] = true
		}
	}
}

// Heal lets all traffic through again.
func (p *Partition) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.cut)
}

// Blocked reports whether traffic from the gossip address from to the one
// to is cut.
func (p *Partition) Blocked(from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut[[2]string{from, to}]
}

// Transport is a memberlist transport on real UDP and TCP sockets whose
// outgoing traffic obeys a Partition: a packet to a blocked address is
// dropped without error, as a lost datagram would be, and a stream to one
// is refused. Only outgoing traffic is checked, so a cut is complete when
// every node uses a Transport from the same Partition.
type Transport struct {
	net  *memberlist.NetTransport
	p    *Partition
	addr string
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// NewTransport binds a memberlist.NetTransport to a free port on bindIP,
// a specific IP such as "127.0.0.1" (not "0.0.0.0", as the transport's
// address is what peers are blocked by), and wraps it. memberlist shuts it down when the
// memberlist using it shuts down.
func (p *Partition) NewTransport(bindIP string) (*Transport, error) {
	ip := net.ParseIP(bindIP)
	if ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("bind transport on %q: need a specific IP", bindIP)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bindIP},
		BindPort:  0,
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("bind transport on %s: %w", bindIP, err)
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(nt.GetAutoBindPort()))
	return &Transport{net: nt, p: p, addr: addr}, nil
}

// Addr returns the "ip:port" the transport is bound to, which is the
// node's gossip address unless the node advertises another.
func (t *Transport) Addr() string { return t.addr }

// FinalAdvertiseAddr returns what the node advertises; a zero port means
// the bound port.
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if port == 0 {
		port = t.net.GetAutoBindPort()
	}
	return t.net.FinalAdvertiseAddr(ip, port)
}

// WriteTo sends a packet, or drops it if addr is cut off.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet, or drops it if a.Addr is cut off.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.p.Blocked(t.addr, a.Addr) {
		return time.Now(), nil
	}
	return t.net.WriteToAddress(b, a)
}

// PacketCh returns the incoming packets.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.net.PacketCh() }

// DialTimeout opens a stream, or fails if addr is cut off.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream, or fails if a.Addr is cut off.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.p.Blocked(t.addr, a.Addr) {
		return nil, fmt.Errorf("dial %s from %s: %w", a.Addr, t.addr, ErrBlocked)
	}
	return t.net.DialAddressTimeout(a, timeout)
}

// StreamCh returns the incoming streams.
func (t *Transport) StreamCh() <-chan net.Conn { return t.net.StreamCh() }

// Shutdown closes the sockets.
func (t *Transport) Shutdown() error { return t.net.Shutdown() }
