// Package cluster makes a node part of a cluster of peers that find each
// other by gossip (hashicorp/memberlist), and carries the health state
// between them.
//
// New joins the seeds in Config.Join in the background, so a node may start
// before its seeds, and keeps re-joining seeds and failed peers every
// RejoinInterval: once a partition outlasts memberlist's GossipToTheDeadTime,
// memberlist alone never merges the two sides again. Each node's gRPC address and tier-config hash travel in its
// node metadata; Members and Alive report what this node knows, and
// Config.OnMembers hears of every change, which is how package tierlimit keeps the
// ownership ring up to date without this package knowing about it.
//
// The health state spreads three ways. A state the local Holder adopts, by
// Set or by Merge, is queued for gossip under one name, so only the newest
// waits; a node that adopts a state from a peer queues it again, because one
// gossip broadcast reaches only a few nodes; and every push/pull exchange (on
// join and every PushPullInterval) carries the full state, so a late joiner
// or a healed partition converges even if every broadcast was lost.
//
// Names are unique: a node started under the name of a live member gives
// the name up (NameConflictError), since two processes under one name
// would each count that member's keys. New waits for its first join to
// find out; a node that learns of the conflict later stops gossip and
// reports it in Err.
//
// A node stops with Leave (peers drop it at once) and then Close.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/tierlimit/tierlimit/health"
)

// ErrClosed is returned by Leave after Close.
var ErrClosed = errors.New("cluster: node is closed")

// minRetransmitMult is the least RetransmitMult the health queue uses.
// Each send of a queued message goes to one random node, so with
// memberlist's usual 4 a node of a small cluster still missed a state that
// every receiver re-broadcast about once in a few hundred changes (measured
// on 5 nodes), and waited for the next push/pull. A state change is rare and
// about 100 bytes, so sending it twice as often costs nothing that matters.
const minRetransmitMult = 8

// Node is this process's place in the cluster. Its methods are safe for
// concurrent use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue

	// gossipAddr is this node's gossip address as peers see it.
	gossipAddr string
	// metaMu guards configHash, which goes into the node metadata that
	// memberlist asks for from its own goroutines; it is never held while
	// calling memberlist.
	metaMu     sync.Mutex
	configHash string

	numAlive atomic.Int64
	refused  atomic.Uint64 // health states refused as stamped too far ahead
	// refuseWarn limits the warnings about refused states to one a second.
	refuseWarn warnGate
	joined     atomic.Bool
	leaving    atomic.Bool
	closed     atomic.Bool

	// boot is this process's boot id, random, in every ack it sends.
	boot []byte
	// syncs carries the gossip addresses of restarted members to the join
	// loop, which pushes and pulls the full state with them.
	syncs chan string

	// eventMu serialises the changes of the view with the OnMembers calls
	// that report them, so that they come in order also when the node
	// changes the view itself (see followed). It is taken before mu.
	eventMu sync.Mutex
	// mu guards view, warned, boots, follow, duplicate, claims and
	// checked. It is taken inside memberlist's callbacks, so it is never
	// held while calling memberlist.
	mu   sync.Mutex
	view *view
	// warned holds, per peer, the config hash last warned about.
	warned map[string]string
	// boots holds, per peer, the boot id its last ack carried.
	boots map[string]string
	// follow holds the members restarted at a new address that memberlist
	// has not given their names to yet (see conflict).
	follow map[string]*followed
	// duplicate holds the names that two live processes were seen to
	// claim: those are left to memberlist.
	duplicate map[string]bool
	// claims holds the claims of a name at another address that the join
	// loop has yet to check (see conflict), and checked when each claim
	// was last taken for checking.
	claims  map[claimKey]claim
	checked map[claimKey]time.Time

	// claimed wakes the join loop to check claims; capacity 1.
	claimed chan struct{}
	// lost is why the node gave its name up; nil while it has it.
	lost atomic.Pointer[NameConflictError]
	// settled is closed once the first join, and the checks of the claims
	// it brought, are over; New waits for it.
	settled    chan struct{}
	settleOnce sync.Once
	// detached is set once New has returned, after which a name given up
	// is logged: no caller hears of it.
	detached atomic.Bool

	// lifeMu serialises Leave, Depart, the start of Close and giving the
	// name up, and guards left and shut.
	lifeMu sync.Mutex
	left   bool
	shut   bool

	// peers are Config.Peers without this node's own address; started is
	// when New began.
	peers   []string
	started time.Time

	stop func()        // stops the join loop
	done chan struct{} // closed when the join loop has returned

	// loadMu guards loads, the last load sample of each member (see
	// PublishLoad), and loadSeq, the number of this node's last one.
	loadMu  sync.Mutex
	loads   map[string]loadEntry
	loadSeq uint64
}

// New starts a node: it binds the gossip port and starts joining the seeds
// (or, without seeds, the Peers) in the background. It waits for the first
// join of them, at most memberlist's TCPTimeout plus three ProbeTimeouts,
// so that it can fail if the node's name is taken; then it returns, and the
// node keeps trying seeds that did not answer. It returns an error for an
// invalid Config, an AdvertiseAddr that does not resolve, or a port that
// cannot be bound, and a *NameConflictError if a live member that started
// earlier has the name. Close releases what New started; after an error
// there is nothing to release.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger,
		configHash: cfg.ConfigHash,
		boot:       []byte(cfg.Boot),
		view:       newView(cfg.Name),
		warned:     make(map[string]string),
		boots:      make(map[string]string),
		follow:     make(map[string]*followed),
		duplicate:  make(map[string]bool),
		claims:     make(map[claimKey]claim),
		checked:    make(map[claimKey]time.Time),
		claimed:    make(chan struct{}, 1),
		settled:    make(chan struct{}),
		syncs:      make(chan string, 16),
		done:       make(chan struct{}),
		started:    time.Now(),
		loads:      make(map[string]loadEntry),
	}
	n.numAlive.Store(1)
	n.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int { return int(max(1, n.numAlive.Load())) },
	}

	ctx, stop := context.WithCancel(context.Background())
	mc, err := cfg.memberlistConfig(ctx, &delegate{n: n})
	if err != nil {
		stop()
		return nil, err
	}
	n.queue.RetransmitMult = max(mc.RetransmitMult, minRetransmitMult)
	ml, err := memberlist.Create(mc)
	if err != nil {
		stop()
		return nil, fmt.Errorf("start gossip for %s: %w", cfg.Name, err)
	}
	n.ml = ml
	n.stop = stop

	// Create announced this node to itself, so the view holds its address.
	n.mu.Lock()
	if self, ok := n.view.members[cfg.Name]; ok {
		n.gossipAddr = self.Addr
	}
	n.peers = rejoinTargets(nil, cfg.Peers, []string{n.gossipAddr}, len(cfg.Peers))
	n.mu.Unlock()

	if cfg.SecretKey == "" {
		level := slog.LevelWarn
		if host, _, err := net.SplitHostPort(n.gossipAddr); err == nil && net.ParseIP(host).IsLoopback() {
			level = slog.LevelInfo // only this host can reach it
		}
		n.log.Log(context.Background(), level, "cluster gossip is not encrypted: anyone who can reach the gossip port can join the cluster and set its health state; set a secret key",
			"gossip_addr", n.gossipAddr)
	}
	cfg.Health.OnChange(n.queueHealth)
	if len(cfg.Join) == 0 {
		n.joined.Store(true)
	}
	n.log.Info("gossip started", "gossip_addr", n.gossipAddr, "seeds", cfg.Join)

	go n.run(ctx)
	wait := time.NewTimer(mc.TCPTimeout + pingTries*mc.ProbeTimeout)
	select {
	case <-n.settled:
	case <-wait.C:
	}
	wait.Stop()
	n.detached.Store(true)
	if err := n.lost.Load(); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// settle tells New that the first join is over.
func (n *Node) settle() { n.settleOnce.Do(func() { close(n.settled) }) }

// queueHealth queues s for gossip, replacing any older state still queued.
// The Holder calls it with its lock held, for every state it adopts; it
// only takes the queue's own lock.
func (n *Node) queueHealth(s health.State) {
	if n.closed.Load() {
		return
	}
	n.queue.QueueBroadcast(&broadcast{name: healthBroadcast, msg: encodeHealth(s)})
}

// Members returns every member this node knows, alive or not, itself
// included, sorted by name. A failed or departed member stays for
// ReconnectTimeout.
func (n *Node) Members() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.view.all()
}

// Alive returns the alive members, itself included, sorted by name.
func (n *Node) Alive() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.view.alive()
}

// Quorum returns how many members are alive, this node included, and how
// many are known at now: the alive ones, and those that failed less than
// grace ago. A member that left gracefully is not known, nor one that failed
// longer ago: the cluster is taken to have shrunk. A node alone since it
// started also knows, for grace after its start, of the members in
// Config.Peers: it was one of them before it restarted.
func (n *Node) Quorum(now time.Time, grace time.Duration) (alive, known int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.view.members {
		switch {
		case e.State == StateAlive:
			alive++
			known++
		case e.State == StateDead && now.Sub(e.since) < grace:
			known++
		}
	}
	if alive == 1 && len(n.view.members) == 1 && now.Sub(n.started) < grace {
		known = max(known, 1+len(n.peers))
	}
	return alive, known
}

// Joined reports whether the node has joined its cluster: true when Config
// had no seeds, or once a join of the seeds reached at least one of them.
// It turns false again only for good, when the node gives its name up (see
// Err).
func (n *Node) Joined() bool { return n.joined.Load() }

// Err returns nil while the node has its name, and a *NameConflictError
// once it gave the name up to a live process that started before it. The
// node then no longer gossips: its members stay as it last saw them, and
// it should stop serving. Close it.
func (n *Node) Err() error {
	if err := n.lost.Load(); err != nil {
		return err
	}
	return nil
}

// RefusedStates returns how many health states from peers this node
// refused because they were stamped more than MaxClockOffset ahead of its
// clock.
func (n *Node) RefusedStates() uint64 { return n.refused.Load() }

// GossipAddr returns the "ip:port" peers use to gossip with this node: the
// advertised address, or the bound one, with the real port when Config asked
// for port 0. Give it to other nodes as a seed.
func (n *Node) GossipAddr() string { return n.gossipAddr }

// SetConfigHash publishes hash as this node's tier-config hash, after a
// reload, and waits up to timeout for the news to go out; peers see it in
// Member.ConfigHash and warn while it differs from theirs. It fails if the
// hash does not fit in the node metadata, or if no peer heard of it in
// time (push/pull then carries it within PushPullInterval).
func (n *Node) SetConfigHash(hash string, timeout time.Duration) error {
	if err := n.lost.Load(); err != nil {
		return fmt.Errorf("set config hash: %w", err)
	}
	if size := len(n.meta(hash, true)); size > memberlist.MetaMaxSize {
		return fmt.Errorf("set config hash: %d bytes of node metadata, more than %d", size, memberlist.MetaMaxSize)
	}
	n.metaMu.Lock()
	n.configHash = hash
	n.metaMu.Unlock()
	n.mu.Lock()
	clear(n.warned) // warn again about every peer that differs from the new hash
	n.mu.Unlock()
	if err := n.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("set config hash: %w", err)
	}
	return nil
}

// meta returns the node metadata with hash, and leaving as said.
func (n *Node) meta(hash string, leaving bool) []byte {
	return encodeMeta(nodeMeta{GRPCAddr: n.cfg.GRPCAddr, ConfigHash: hash, Leaving: leaving, Boot: string(n.boot), Started: n.started.UnixNano()})
}

// ConfigHash returns the tier-config hash this node publishes.
func (n *Node) ConfigHash() string {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.configHash
}

// Leave tells the cluster that this node is going away, so peers drop it at
// once instead of after failing to probe it, and stops re-joining. It waits
// up to timeout for the news to go out (zero means no limit); the node keeps
// answering gossip until Close. Calling it again does nothing. After the
// node gave its name up it returns Err's error: the cluster never had it.
func (n *Node) Leave(timeout time.Duration) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.shut {
		return ErrClosed
	}
	if err := n.lost.Load(); err != nil {
		return fmt.Errorf("leave cluster: %w", err)
	}
	if n.left {
		return nil
	}
	n.left = true
	start := time.Now()
	n.depart(timeout)
	rest := timeout
	if timeout > 0 {
		rest = max(timeout-time.Since(start), time.Millisecond)
	}
	if err := n.ml.Leave(rest); err != nil {
		return fmt.Errorf("leave cluster: %w", err)
	}
	n.log.Info("left cluster")
	return nil
}

// Depart tells the cluster that this node is about to leave, and waits up
// to timeout for the news to go out: peers see Member.Leaving (and, after
// Leave, StateLeft rather than StateDead) and can stop sending it work
// while it still answers. It stops re-joining. Leave calls it if it was not
// called before; calling it again does nothing. After the node gave its
// name up it returns Err's error.
func (n *Node) Depart(timeout time.Duration) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.shut {
		return ErrClosed
	}
	if err := n.lost.Load(); err != nil {
		return fmt.Errorf("depart: %w", err)
	}
	n.depart(timeout)
	return nil
}

// depart is Depart; n.lifeMu must be held.
func (n *Node) depart(timeout time.Duration) {
	if n.leaving.Swap(true) {
		return
	}
	n.stop()
	// memberlist's own leave message does not tell a departure from a
	// failure; the metadata does.
	if err := n.ml.UpdateNode(timeout); err != nil {
		n.log.Debug("announce leave", "err", err)
	}
}

// Close stops the join loop and shuts gossip down. Without a Leave first,
// peers see a crash and take the suspicion timeout to drop this node. It is
// safe to call more than once. It may wait for a join in progress, up to
// memberlist's TCPTimeout, or for the pings of a name's check, up to three
// ProbeTimeouts.
func (n *Node) Close() error {
	n.lifeMu.Lock()
	if n.shut {
		n.lifeMu.Unlock()
		return nil
	}
	n.shut = true
	n.closed.Store(true)
	// Not held while the join loop ends: it may be giving the name up,
	// which takes lifeMu.
	n.lifeMu.Unlock()
	n.stop()
	<-n.done
	if err := n.ml.Shutdown(); err != nil {
		return fmt.Errorf("shut down gossip: %w", err)
	}
	return nil
}
