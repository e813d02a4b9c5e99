package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// packetQueue is how many packets a transport holds for its member before
// it drops more, as a full UDP receive buffer would.
const packetQueue = 1024

// errRefused is a dial to an address where no member listens, or one that
// has stopped.
var errRefused = errors.New("connection refused")

// Network connects the Transports it makes, in memory. It is what
// memberlist.MockNetwork is, with the differences a long simulation needs:
// it may grow while members run (MockNetwork's maps are not locked); a
// packet to a member that stopped, or that is behind by packetQueue packets,
// is dropped, as UDP would drop it (MockNetwork's channels are unbuffered,
// so a sender to a stopped member blocks for ever, and failure detection
// cannot be measured); and each transport counts the bytes it sends. Packets
// and streams arrive at once: the simulation has no network latency, so its
// times are memberlist's timers and the CPU. It is safe for concurrent use.
type Network struct {
	// mu guards byAddr and port.
	mu     sync.RWMutex
	byAddr map[string]*Transport
	port   int

	dropped    atomic.Uint64 // packets dropped because a receiver was behind
	unfiltered atomic.Uint64 // packets dropped because stripUserMessages failed

	// estimate makes the transports compress a sample of what they send,
	// to estimate its size had memberlist compressed it.
	estimate atomic.Bool

	// classify makes WriteToAddress count the packets that carry gossip
	// in gossipPackets; it costs a decompression per packet.
	classify      atomic.Bool
	gossipPackets atomic.Uint64
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{byAddr: make(map[string]*Transport), port: 10000}
}

// NewTransport returns a transport at a new address, 127.0.0.1 and the
// next port.
func (n *Network) NewTransport() *Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.port++
	t := &Transport{
		net:     n,
		addr:    &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: n.port},
		packets: make(chan *memberlist.Packet, packetQueue),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
	n.byAddr[t.addr.String()] = t
	return t
}

// Dropped returns how many packets were dropped because their receiver had
// packetQueue packets waiting.
func (n *Network) Dropped() uint64 { return n.dropped.Load() }

// Estimate sets whether the transports estimate the compressed size of
// what they send, for members that run with memberlist's compression off:
// they compress one packet and one stream write in sampleEvery as
// memberlist would (a packet is sent compressed only if that is shorter; a
// stream write always is), and Traffic.Wire scales the rest by what the
// sample saved.
func (n *Network) Estimate(on bool) { n.estimate.Store(on) }

// sampleEvery is how many packets, and stream writes, one sample stands
// for.
const sampleEvery = 8

// CountGossip sets whether the network counts the packets that carry
// queued broadcasts (see carriesBroadcast), for GossipPackets.
func (n *Network) CountGossip(on bool) { n.classify.Store(on) }

// GossipPackets returns how many packets carrying queued broadcasts were
// sent while CountGossip was on.
func (n *Network) GossipPackets() uint64 { return n.gossipPackets.Load() }

// Unfiltered returns how many packets to a transport that drops user
// messages were dropped whole because they could not be parsed; it should
// stay zero.
func (n *Network) Unfiltered() uint64 { return n.unfiltered.Load() }

// lookup returns the running transport at addr, or nil.
func (n *Network) lookup(addr string) *Transport {
	n.mu.RLock()
	t := n.byAddr[addr]
	n.mu.RUnlock()
	if t == nil || t.stopped() {
		return nil
	}
	return t
}

// Transport is one member's memberlist.NodeAwareTransport on a Network.
type Transport struct {
	net     *Network
	addr    *net.UDPAddr
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{} // closed by Shutdown
	stop    sync.Once

	// dropUser makes the transport drop the user messages (the health
	// gossip) from the packets it receives, and nothing else: its member
	// then learns of a state only by push/pull.
	dropUser atomic.Bool

	sentPackets traffic       // bytes of packets sent
	sentStreams traffic       // bytes written to streams
	dials       atomic.Uint64 // streams opened by this transport
}

// traffic counts the bytes sent one way, and a sample of them with their
// compressed size. It is safe for concurrent use.
type traffic struct {
	n          atomic.Uint64 // sends
	raw        atomic.Uint64
	sampleRaw  atomic.Uint64
	sampleWire atomic.Uint64
}

// add counts one send of b; if sample, one in sampleEvery is compressed
// with compress, which returns the size b would have had.
func (c *traffic) add(b []byte, sample bool, compress func([]byte) int) {
	c.raw.Add(uint64(len(b)))
	if sample && c.n.Add(1)%sampleEvery == 0 {
		c.sampleRaw.Add(uint64(len(b)))
		c.sampleWire.Add(uint64(compress(b)))
	}
}

// load returns the counts.
func (c *traffic) load() Bytes {
	return Bytes{Raw: c.raw.Load(), SampleRaw: c.sampleRaw.Load(), SampleWire: c.sampleWire.Load()}
}

// Bytes is a count of bytes sent, with a sample of them and the sample's
// compressed size.
type Bytes struct {
	Raw, SampleRaw, SampleWire uint64
}

// Plus returns b + o.
func (b Bytes) Plus(o Bytes) Bytes {
	return Bytes{b.Raw + o.Raw, b.SampleRaw + o.SampleRaw, b.SampleWire + o.SampleWire}
}

// Minus returns b - o, the bytes of a window between two counts.
func (b Bytes) Minus(o Bytes) Bytes {
	return Bytes{b.Raw - o.Raw, b.SampleRaw - o.SampleRaw, b.SampleWire - o.SampleWire}
}

// Wire returns the bytes as they went, or would have gone, on the wire:
// Raw, scaled by what compression saved on the sample if there is one.
func (b Bytes) Wire() float64 {
	if b.SampleRaw == 0 {
		return float64(b.Raw)
	}
	return float64(b.Raw) * float64(b.SampleWire) / float64(b.SampleRaw)
}

// packetWire returns the size of packet b had memberlist compressed it
// (net.go rawSendMsgPacket): the message is compressed before the CRC is
// put in front, and sent compressed only if that is shorter.
func packetWire(b []byte) int {
	head, msg := 0, b
	if len(b) > 5 && b[0] == hasCrcMsg {
		head, msg = 5, b[5:]
	}
	c, err := compress(msg)
	if err != nil || len(c) >= len(msg) {
		return len(b)
	}
	return head + len(c)
}

// streamWire returns the size of stream write b had memberlist compressed
// it (net.go rawSendMsgStream): always compressed.
func streamWire(b []byte) int {
	c, err := compress(b)
	if err != nil {
		return len(b)
	}
	return len(c)
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Addr returns the transport's address, "127.0.0.1:port".
func (t *Transport) Addr() string { return t.addr.String() }

// DropUserMessages sets whether the transport drops the user messages in
// the packets it receives.
func (t *Transport) DropUserMessages(drop bool) { t.dropUser.Store(drop) }

// Sent returns the bytes this transport has sent in packets (UDP) and
// streams (TCP).
func (t *Transport) Sent() (packets, streams Bytes) {
	return t.sentPackets.load(), t.sentStreams.load()
}

// Dials returns how many streams this transport opened: one per push/pull
// or join it started, and per TCP fallback probe.
func (t *Transport) Dials() uint64 { return t.dials.Load() }

// stopped reports whether Shutdown was called.
func (t *Transport) stopped() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// FinalAdvertiseAddr returns the transport's own address, whatever is asked.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.addr.IP, t.addr.Port, nil
}

// WriteTo sends a packet to addr; see WriteToAddress.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet. Like a UDP send it succeeds also when
// nobody receives it.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if t.stopped() {
		return now, nil // a crashed process sends nothing
	}
	t.sentPackets.add(b, t.net.estimate.Load(), packetWire)
	if t.net.classify.Load() && carriesBroadcast(b) {
		t.net.gossipPackets.Add(1)
	}
	dest := t.net.lookup(a.Addr)
	if dest == nil {
		return now, nil
	}
	buf := bytes.Clone(b)
	if dest.dropUser.Load() {
		stripped, err := stripUserMessages(buf)
		if err != nil {
			t.net.unfiltered.Add(1) // dropped whole: it must not leak the state
			return now, nil
		}
		if stripped == nil {
			return now, nil
		}
		buf = stripped
	}
	select {
	case dest.packets <- &memberlist.Packet{Buf: buf, From: t.addr, Timestamp: now}:
	default:
		t.net.dropped.Add(1)
	}
	return now, nil
}

// PacketCh returns the packets sent to this transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout opens a stream to addr; see DialAddressTimeout.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a running transport, or fails at
// once as a refused TCP connection would.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dest := t.net.lookup(a.Addr)
	if dest == nil || t.stopped() {
		return nil, fmt.Errorf("dial %s: %w", a.Addr, errRefused)
	}
	near, far := net.Pipe()
	local := &countedConn{Conn: near, c: &t.sentStreams, sample: t.net.estimate.Load()}
	remote := &countedConn{Conn: far, c: &dest.sentStreams, sample: t.net.estimate.Load()}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case dest.streams <- remote:
		t.dials.Add(1)
		return local, nil
	case <-dest.done:
	case <-timer.C:
	}
	near.Close()
	far.Close()
	return nil, fmt.Errorf("dial %s: %w", a.Addr, errRefused)
}

// StreamCh returns the streams opened to this transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streams }

// IngestPacket reads a whole packet from conn and delivers it to this
// transport, as memberlist.MockTransport does.
func (t *Transport) IngestPacket(conn net.Conn, addr net.Addr, now time.Time, shouldClose bool) error {
	if shouldClose {
		defer conn.Close()
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return fmt.Errorf("read packet: %w", err)
	}
	if len(b) == 0 {
		return errors.New("read packet: empty")
	}
	select {
	case t.packets <- &memberlist.Packet{Buf: b, From: addr, Timestamp: now}:
		return nil
	case <-t.done:
		return errRefused
	}
}

// IngestStream delivers conn to this transport as a new stream.
func (t *Transport) IngestStream(conn net.Conn) error {
	select {
	case t.streams <- conn:
		return nil
	case <-t.done:
		return errRefused
	}
}

// Shutdown stops the transport: from now on packets to it are dropped and
// dials to it refused. It is safe to call more than once.
func (t *Transport) Shutdown() error {
	t.stop.Do(func() { close(t.done) })
	return nil
}

// countedConn counts the bytes written to it.
type countedConn struct {
	net.Conn
	c      *traffic
	sample bool
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.add(b[:n], c.sample, streamWire)
	return n, err
}
