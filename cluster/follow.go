package cluster

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// followFails is how many joins in a row a followed member may miss before
// it is taken as failed: memberlist does not probe it until it gives the
// member's name to the new address.
const followFails = 3

// followed is a member restarted at a new address that memberlist has not
// given its name to yet.
type followed struct {
	addr  string // its new gossip address
	fails int    // joins in a row that did not reach it
}

// conflict handles a peer's claim of a member's name at another address than
// memberlist has for it. When the claim carries a boot id other than the one
// the member had, its process restarted at a new address (a container that
// came back with another IP): memberlist keeps the old address until it has
// detected the old process's failure and then waited DeadNodeReclaimTime,
// ten seconds and more with the LAN defaults, and until a later push/pull
// brings the claim again. The node does not wait: its view, and so
// OnMembers, follows the member to the new address at once, and the join
// loop pushes and pulls with it every second (see followAll) until
// memberlist takes the new address too. A claim with the same boot id comes
// from the process memberlist knows, whose address changed while it ran,
// or from a second process under the same name; it is left to memberlist.
//
// memberlist calls it with its member lock held, on any of its goroutines.
func (n *Node) conflict(existing, other *memberlist.Node) {
	name := existing.Name
	if name == n.cfg.Name {
		// Our previous process's address, still in a peer's list: the peers
		// follow this process, as above.
		return
	}
	oldAddr, addr := joinAddr(existing.Addr, existing.Port), joinAddr(other.Addr, other.Port)
	meta := decodeMeta(other.Meta)
	n.eventMu.Lock()
	defer n.eventMu.Unlock()
	n.mu.Lock()
	e, ok := n.view.members[name]
	restarted := ok && e.Addr == oldAddr && meta.Boot != "" && len(meta.Boot) <= MaxBootLen &&
		meta.Boot != n.boots[name] && !n.duplicate[name]
	if restarted {
		n.boots[name] = meta.Boot
		n.follow[name] = &followed{addr: addr}
		n.view.join(name, addr, meta, time.Now())
	}
	alive := n.view.alive()
	n.mu.Unlock()
	if !restarted {
		return
	}
	n.log.Info("peer restarted at a new address; following it", "peer", name, "old_addr", oldAddr, "addr", addr, "grpc_addr", meta.GRPCAddr)
	n.membersChanged(alive)
}

// followAll joins each followed member, which gives it this node's members
// and health state and gives memberlist the member's new address again, to
// take once the old one may be reclaimed. A member that misses followFails
// joins in a row is taken as failed.
func (n *Node) followAll(ctx context.Context) {
	n.mu.Lock()
	names := make(map[string]string, len(n.follow)) // by address
	for name, f := range n.follow {
		names[f.addr] = name
	}
	n.mu.Unlock()
	n.joinEach(ctx, slices.Collect(maps.Keys(names)), func(addr string, err error) {
		n.followed(names[addr], addr, err)
	})
}

// followed records the outcome of a join of the followed member name at
// addr.
func (n *Node) followed(name, addr string, err error) {
	n.eventMu.Lock()
	defer n.eventMu.Unlock()
	n.mu.Lock()
	f := n.follow[name]
	if f == nil || f.addr != addr {
		n.mu.Unlock()
		return // memberlist took the address meanwhile, or another came
	}
	if err == nil {
		f.fails = 0
		n.mu.Unlock()
		return
	}
	f.fails++
	if f.fails < followFails {
		n.mu.Unlock()
		return
	}
	delete(n.follow, name)
	if e := n.view.members[name]; e != nil && e.Addr == addr && e.State == StateAlive {
		n.view.leave(name, time.Now())
	}
	alive := n.view.alive()
	n.mu.Unlock()
	n.log.Warn("peer failed", "peer", name, "addr", addr, "err", err)
	n.membersChanged(alive)
}

// stale reports whether a memberlist event about name at addr concerns a
// process the view no longer follows: the old address of a member followed
// to a new one. An event at the new address ends the following, since
// memberlist has the new address too. n.mu must be held.
func (n *Node) stale(name, addr string) bool {
	f := n.follow[name]
	switch {
	case f == nil:
		return false
	case f.addr == addr:
		delete(n.follow, name)
		return false
	default:
		return true
	}
}
