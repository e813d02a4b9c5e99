package cluster

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/tierlimit/tierlimit/health"
)

// Message kinds. Every user message, and the push/pull state, starts with
// one of these bytes so other kinds can be added without breaking old nodes,
// which ignore kinds they do not know.
const (
	msgHealth byte = 1
)

// healthBroadcast is the name of the health state in the broadcast queue:
// queuing a newer state replaces the older one still queued.
const healthBroadcast = "health"

// broadcast is one queued user message.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

// Name returns the broadcast's name; see memberlist.NamedBroadcast.
func (b *broadcast) Name() string { return b.name }

// Invalidates reports whether b replaces other: it does if other has the
// same name.
func (b *broadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(memberlist.NamedBroadcast)
	return ok && o.Name() == b.name
}

// Message returns the wire bytes.
func (b *broadcast) Message() []byte { return b.msg }

// Finished does nothing: nobody waits for a health broadcast.
func (b *broadcast) Finished() {}

// encodeHealth returns the tagged wire form of s.
func encodeHealth(s health.State) []byte {
	return append([]byte{msgHealth}, s.Encode()...)
}

// delegate is the Node as memberlist sees it: its Delegate and its
// EventDelegate. memberlist calls the Delegate methods from its packet,
// stream and gossip goroutines, possibly at once, and the EventDelegate
// methods one at a time with its member lock held. None of them may block
// or call back into memberlist.
type delegate struct {
	n *Node
}

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
)

// NotifyConflict hears that a peer claims a member's name at another
// address; see Node.conflict.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.n.conflict(existing, other)
}

// AckPayload returns this node's boot id, which every ack to a probe
// carries, so that a peer can tell that the process behind a name and an
// address is a new one (see NotifyPingComplete).
func (d *delegate) AckPayload() []byte { return d.n.boot }

// NotifyPingComplete learns the boot id of the member that answered a
// probe. A member whose boot id changed restarted, perhaps faster than
// failure detection could notice: it knows no member and no state, and
// memberlist would leave it so until a random push/pull, so the node syncs
// with it at once. memberlist calls this from its probe goroutine; it only
// queues the sync.
func (d *delegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, payload []byte) {
	if len(payload) == 0 || len(payload) > MaxBootLen {
		return // a peer from before boot ids, or garbage
	}
	boot := string(payload)
	addr := joinAddr(other.Addr, other.Port)
	n := d.n
	n.mu.Lock()
	if f := n.follow[other.Name]; f != nil && f.addr != addr {
		// The process the view moved away from answers: two live processes
		// claim the name. Leave it to memberlist, which keeps this one.
		delete(n.follow, other.Name)
		n.duplicate[other.Name] = true
		n.boots[other.Name] = boot
		n.mu.Unlock()
		n.log.Error("two live processes claim one member name; give every node its own name",
			"peer", other.Name, "addr", addr, "other_addr", f.addr)
		d.NotifyUpdate(other)
		return
	}
	prev, known := n.boots[other.Name]
	n.boots[other.Name] = boot
	n.mu.Unlock()
	if known && prev != boot {
		n.log.Info("peer restarted; syncing with it", "peer", other.Name, "addr", addr)
		select {
		case n.syncs <- addr:
		default: // a sync is queued already; the next probe asks again
		}
	}
}

// NodeMeta returns this node's metadata; New checked that it fits in limit.
func (d *delegate) NodeMeta(limit int) []byte {
	return d.n.meta(d.n.ConfigHash(), d.n.leaving.Load())
}

// NotifyMsg handles a user message from a peer. It decodes b before it
// returns and keeps nothing that points into it, as memberlist reuses b.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case msgHealth:
		d.mergeHealth(b[1:], "gossip")
	case msgLoad:
		d.n.mergeLoad(b[1:])
	default:
		d.n.log.Debug("ignoring gossip message of unknown kind", "kind", b[0])
	}
}

// mergeHealth decodes a peer's state and merges it. When the state is
// adopted, the Holder calls Node.queueHealth, which passes it on: a queued
// broadcast reaches only a few nodes, so every receiver must re-send it.
func (d *delegate) mergeHealth(b []byte, via string) {
	s, err := health.Decode(b)
	if err != nil {
		d.n.log.Debug("ignoring bad health state", "via", via, "err", err)
		return
	}
	now := time.Now()
	adopted, err := d.n.cfg.Health.Merge(s, now, d.n.cfg.MaxClockOffset)
	switch {
	case err != nil:
		d.n.refused.Add(1)
		if d.n.refuseWarn.allow(now) {
			d.n.log.Warn("refused a health state stamped too far ahead: a clock is off, or the state is forged",
				"via", via, "origin", s.Origin, "status", s.Status.String(), "err", err,
				"max_clock_offset", d.n.cfg.MaxClockOffset.String())
		}
	case adopted:
		d.n.log.Info("adopted health state from peer", "via", via,
			"status", s.Status.String(), "version", s.Version, "origin", s.Origin)
	}
}

// GetBroadcasts returns queued messages for one gossip packet.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.queue.GetBroadcasts(overhead, limit)
}

// LocalState returns the full state for a push/pull exchange: the health
// state, so a joining node or a healed partition converges even if every
// broadcast was lost.
func (d *delegate) LocalState(join bool) []byte {
	return encodeHealth(d.n.cfg.Health.Current())
}

// MergeRemoteState merges a peer's LocalState.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 || buf[0] != msgHealth {
		d.n.log.Debug("ignoring push/pull state of unknown kind")
		return
	}
	d.mergeHealth(buf[1:], "push_pull")
}

// NotifyJoin records a member that joined or came back.
func (d *delegate) NotifyJoin(node *memberlist.Node) {
	d.n.memberEvent(eventJoin, node)
}

// NotifyLeave records a member that left or failed.
func (d *delegate) NotifyLeave(node *memberlist.Node) {
	d.n.memberEvent(eventLeave, node)
}

// NotifyUpdate records a member whose metadata changed.
func (d *delegate) NotifyUpdate(node *memberlist.Node) {
	d.n.memberEvent(eventUpdate, node)
}

// eventKind is one of the EventDelegate callbacks.
type eventKind int

const (
	eventJoin eventKind = iota
	eventLeave
	eventUpdate
)

// memberEvent applies one membership event to the view, logs it and calls
// OnMembers. It runs on memberlist's goroutine with memberlist's member lock
// held: it only takes n.mu, which is never held while calling memberlist.
func (n *Node) memberEvent(kind eventKind, node *memberlist.Node) {
	// Copy what we need now: node points into memberlist's own state.
	name := node.Name
	addr := joinAddr(node.Addr, node.Port)
	meta := decodeMeta(node.Meta)
	now := time.Now()
	ownHash := n.ConfigHash()

	n.eventMu.Lock()
	defer n.eventMu.Unlock()
	n.mu.Lock()
	if n.stale(name, addr) {
		// memberlist's news of a process the view left for its successor.
		n.mu.Unlock()
		return
	}
	if kind != eventLeave && meta.Boot != "" && len(meta.Boot) <= MaxBootLen {
		// What a later ack is compared with, even if no probe reached the
		// member before it restarted.
		n.boots[name] = meta.Boot
	}
	var state string
	switch kind {
	case eventJoin:
		n.view.join(name, addr, meta, now)
		state = StateAlive
	case eventUpdate:
		n.view.update(name, addr, meta, now)
		state = StateAlive
	case eventLeave:
		state = n.view.leave(name, now)
	}
	alive := n.view.alive()
	prev, warned := n.warned[name]
	warn := kind != eventLeave && name != n.cfg.Name &&
		meta.ConfigHash != ownHash && (!warned || prev != meta.ConfigHash)
	if warn {
		n.warned[name] = meta.ConfigHash
	}
	n.mu.Unlock()

	if name != n.cfg.Name {
		switch kind {
		case eventJoin:
			n.log.Info("peer joined", "peer", name, "addr", addr, "grpc_addr", meta.GRPCAddr)
		case eventUpdate:
			n.log.Debug("peer updated", "peer", name, "addr", addr, "grpc_addr", meta.GRPCAddr, "leaving", meta.Leaving)
		case eventLeave:
			if state == StateLeft {
				n.log.Info("peer left", "peer", name, "addr", addr)
			} else {
				n.log.Warn("peer failed", "peer", name, "addr", addr)
			}
		}
	}
	if warn {
		n.log.Warn("peer runs a different tier config: limits will differ by node until configs match",
			"peer", name, "peer_config_hash", meta.ConfigHash, "config_hash", ownHash)
	}
	n.membersChanged(alive)
}

// membersChanged reports the alive members to OnMembers. n.eventMu must be
// held.
func (n *Node) membersChanged(alive []Member) {
	n.numAlive.Store(int64(len(alive)))
	if n.cfg.OnMembers != nil {
		n.cfg.OnMembers(alive)
	}
}

// warnGate lets one warning through a second. It is safe for concurrent
// use; the zero value lets the first one through.
type warnGate struct {
	last atomic.Int64 // Unix nanoseconds of the last warning let through; 0: none
}

// allow reports whether a warning may be logged at now.
func (g *warnGate) allow(now time.Time) bool {
	n, last := now.UnixNano(), g.last.Load()
	return (last == 0 || n-last >= int64(time.Second)) && g.last.CompareAndSwap(last, n)
}
