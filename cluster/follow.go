package cluster

import (
	"context"
	"maps"
	"slices"
	"time"
)

// followFails is how many joins in a row a followed member may miss before
// it is taken as failed: memberlist does not probe it until it gives the
// member's name to the new address.
const followFails = 3

// followed is a member restarted at a new address that memberlist has not
// given its name to yet (see conflict).
type followed struct {
	addr  string // its new gossip address
	fails int    // joins in a row that did not reach it
}

// restarted returns the view's entry of the peer c names if c is the
// claim of that peer restarted at a new address: the view has the peer at
// the address memberlist has, and the claim carries a boot id other than
// the peer's. Otherwise it returns nil. n.mu must be held.
func (n *Node) restarted(c claim) *entry {
	e, ok := n.view.members[c.name]
	if !ok || e.Addr != c.held || c.meta.Boot == "" || len(c.meta.Boot) > MaxBootLen ||
		c.meta.Boot == n.boots[c.name] || n.duplicate[c.name] {
		return nil
	}
	return e
}

// followClaim makes the view follow the peer c names to the address it
// claims, and returns the alive members. n.mu must be held.
func (n *Node) followClaim(c claim) []Member {
	n.boots[c.name] = c.meta.Boot
	n.follow[c.name] = &followed{addr: c.addr}
	n.view.join(c.name, c.addr, c.meta, time.Now())
	return n.view.alive()
}

// logFollow logs that the view follows the peer c names.
func (n *Node) logFollow(c claim) {
	n.log.Info("peer restarted at a new address; following it", "peer", c.name, "old_addr", c.held, "addr", c.addr, "grpc_addr", c.meta.GRPCAddr)
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
