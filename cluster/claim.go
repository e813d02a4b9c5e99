package cluster

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// NameConflictError is why a node gave its name up: another live process,
// which started before it, holds the name in the cluster. Two processes
// under one name would each count the keys the ring gives that name, and
// admit each key's limit once each. Give every node its own name.
type NameConflictError struct {
	// Name is the name both processes claim.
	Name string
	// Addr is the gossip address ("ip:port") of the process that keeps it.
	Addr string
}

func (e *NameConflictError) Error() string {
	return fmt.Sprintf("cluster: node name %q is already used by the member at %s", e.Name, e.Addr)
}

// claim is a peer's word that a member's name is at another address than
// memberlist has for it. Unless the member at the address memberlist has
// left, or has been dead for more than DeadNodeReclaimTime, memberlist
// refuses the claim, logs "Conflicting address" at ERR and calls
// ConflictDelegate.NotifyConflict, on every node that hears it:
//
//   - the node under the name hears, from any peer that still has the
//     other process, that the name is at that process's address: a second
//     process joining through any seed, or the one the cluster has while
//     another joins through it, or a process restarted at a new address
//     before its peers noticed its old one fail;
//   - any other node hears the claim of the process it does not have.
//
// memberlist changes nothing on either side: both processes run under the
// name, and every node keeps whichever it heard of first.
type claim struct {
	name string
	held string   // the address memberlist has for name
	addr string   // the address claimed
	meta nodeMeta // the claimant's metadata
}

// claimKey identifies a claim: a name and the address claimed.
type claimKey [2]string

func (c claim) key() claimKey { return claimKey{c.name, c.addr} }

// conflict hears a claim (see claim). memberlist calls it with its member
// lock held, on any of its goroutines, so it checks nothing over the
// network itself:
//
//   - A claim of this node's name goes to the join loop (checkClaims),
//     which decides whether this process or the other keeps the name.
//   - A claim of a peer's name whose boot id differs from the peer's may
//     come from the peer restarted at a new address (a container that came
//     back with another IP): memberlist keeps the old address until it has
//     detected the old process's failure and then waited
//     DeadNodeReclaimTime, ten seconds and more with the LAN defaults, and
//     until a later push/pull brings the claim again. The node does not
//     wait: if memberlist has the peer dead already, the view, and so
//     OnMembers, follows the peer to the new address at once, and the join
//     loop pushes and pulls with it every second (see followAll) until
//     memberlist takes the new address too. If memberlist still has it
//     alive, the join loop first pings the old address: a process that
//     answers there means a second process took the name, and the view
//     stays.
//   - A claim with the peer's boot id comes from the process memberlist
//     knows, whose address changed while it ran; it is left to memberlist,
//     as are the claims of a name seen claimed by two live processes.
func (n *Node) conflict(existing, other *memberlist.Node) {
	c := claim{
		name: existing.Name,
		held: joinAddr(existing.Addr, existing.Port),
		addr: joinAddr(other.Addr, other.Port),
		meta: decodeMeta(other.Meta),
	}
	if c.name == n.cfg.Name {
		n.mu.Lock()
		queued := n.queueClaim(c, time.Now())
		n.mu.Unlock()
		if queued {
			n.signalClaims()
		}
		return
	}
	n.eventMu.Lock()
	defer n.eventMu.Unlock()
	n.mu.Lock()
	e := n.restarted(c)
	switch {
	case e == nil:
		n.mu.Unlock()
	case e.State == StateAlive:
		queued := n.queueClaim(c, time.Now())
		n.mu.Unlock()
		if queued {
			n.signalClaims()
		}
	default:
		alive := n.followClaim(c)
		n.mu.Unlock()
		n.logFollow(c)
		n.membersChanged(alive)
	}
}

// queueClaim queues c for the join loop, unless it waits already or was
// checked less than a RejoinInterval before now: every push/pull and
// gossip of the other process repeats it. It reports whether it queued c.
// n.mu must be held.
func (n *Node) queueClaim(c claim, now time.Time) bool {
	k := c.key()
	if _, ok := n.claims[k]; ok {
		return false
	}
	if at, ok := n.checked[k]; ok && now.Sub(at) < n.cfg.RejoinInterval {
		return false
	}
	n.claims[k] = c
	return true
}

// signalClaims wakes the join loop to check the queued claims.
func (n *Node) signalClaims() {
	select {
	case n.claimed <- struct{}{}:
	default: // it is woken already
	}
}

// checkClaims checks the claims queued since it last ran, all at once, and
// waits for them; it reports whether this node keeps its name. If it does
// not, the node has given the name up (see giveUp). It runs on the join
// loop, after every join that may have brought claims.
func (n *Node) checkClaims(ctx context.Context) bool {
	now := time.Now()
	n.mu.Lock()
	claims := slices.Collect(maps.Values(n.claims))
	clear(n.claims)
	maps.DeleteFunc(n.checked, func(_ claimKey, at time.Time) bool { return now.Sub(at) >= n.cfg.RejoinInterval })
	for _, c := range claims {
		n.checked[c.key()] = now
	}
	n.mu.Unlock()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lost *NameConflictError
	)
	for _, c := range claims {
		wg.Go(func() {
			if ctx.Err() != nil {
				return // closing: nothing to keep
			}
			if err := n.check(c); err != nil {
				mu.Lock()
				lost = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if lost == nil {
		return true
	}
	n.giveUp(lost)
	return false
}

// check decides one claim. For a claim of this node's name it returns the
// error to give the name up with, or nil to keep it.
//
// Of two live processes under one name, the one that started first keeps
// it (see precedes): it is the member the cluster has, unless the two
// started at once and raced. The later one gives the name up when it hears
// of the earlier; the earlier one, to be sure the later hears of it (the
// cluster may have taken the later one's address), joins the later's
// address, which pushes its own claim there. A claim the other process
// does not answer at is this process's previous one, still alive in a
// peer's list after a restart at a new address: the node keeps the name.
// A process restarted at its own address is never claimed against: the
// addresses agree.
func (n *Node) check(c claim) *NameConflictError {
	if c.name != n.cfg.Name {
		n.checkPeerClaim(c)
		return nil
	}
	if precedes(n.started.UnixNano(), n.gossipAddr, c.meta.Started, c.addr) {
		n.log.Warn("another process claims this node's name; telling it that this node, which started first, keeps it",
			"claim_addr", c.addr)
		if _, err := n.join([]string{c.addr}); err != nil {
			n.log.Debug("could not reach the process that claims this node's name", "claim_addr", c.addr, "err", err)
		}
		return nil
	}
	if !n.answers(c.name, c.addr) {
		n.log.Debug("this node's name is claimed at an address where it is not answered: this node's previous process", "claim_addr", c.addr)
		return nil
	}
	return &NameConflictError{Name: c.name, Addr: c.addr}
}

// checkPeerClaim follows a peer to the address it claims unless the peer
// still answers at the address memberlist has, which means that a second
// process took its name (and gives it up, as its check tells it).
func (n *Node) checkPeerClaim(c claim) {
	if n.answers(c.name, c.held) {
		n.log.Warn("ignoring a claim of a peer's name from another address: the peer still answers at its own; give every node its own name",
			"peer", c.name, "addr", c.held, "claim_addr", c.addr)
		return
	}
	n.eventMu.Lock()
	defer n.eventMu.Unlock()
	n.mu.Lock()
	if n.restarted(c) == nil {
		n.mu.Unlock()
		return // the view moved on meanwhile
	}
	alive := n.followClaim(c)
	n.mu.Unlock()
	n.logFollow(c)
	n.membersChanged(alive)
}

// pingTries is how many pings in a row a process must leave unanswered to
// be taken as gone. A ping and its ack are one UDP datagram each, and a
// lost one must not make a node take a live process's name, nor its peers
// follow a second process: memberlist itself suspects a member only after
// indirect probes failed too.
const pingTries = 3

// answers reports whether a process called name answers one of pingTries
// pings at addr, each given memberlist's ProbeTimeout. memberlist's ping
// names the node it is for, and a process under another name does not
// answer it.
func (n *Node) answers(name, addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	to := net.UDPAddrFromAddrPort(ap)
	for range pingTries {
		if _, err := n.ml.Ping(name, to); err == nil {
			return true
		}
	}
	return false
}

// giveUp makes the node give its name up: it records err for Err, stops
// the join loop and shuts gossip down. It does not leave: memberlist's
// leave message carries only the name and an incarnation number, and
// peers would take it as the other process leaving. Peers never had this
// process under the name, so there is nothing to tell them.
func (n *Node) giveUp(err *NameConflictError) {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.shut || n.lost.Load() != nil {
		return // Close shuts gossip down
	}
	n.lost.Store(err)
	n.joined.Store(false)
	n.stop()
	if e := n.ml.Shutdown(); e != nil {
		n.log.Debug("shut down gossip", "err", e)
	}
	if n.detached.Load() {
		// New has returned: nobody else hears of it.
		n.log.Error("gave this node's name up to a process that started earlier; gossip stopped", "err", err)
	}
}

// precedes reports whether, of two processes under one name, the one that
// started at aStart (Unix nanoseconds) with gossip address aAddr comes
// before the one that started at bStart with bAddr: it started first, or
// at the same time with the lower address. A start of 0, from a process
// that does not publish its start, comes first, so that a node gives way
// to it rather than keep two processes under one name. Start times come
// from two clocks; they only have to be closer than the two starts are
// apart.
func precedes(aStart int64, aAddr string, bStart int64, bAddr string) bool {
	if aStart != bStart {
		return aStart < bStart
	}
	return aAddr < bAddr
}
