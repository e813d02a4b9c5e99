package ownership

import (
	"context"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/forward"
)

// Contact: a node that cannot reach a majority of the members must not go
// on counting its own keys at the full limit, since the other side of the
// cut may be counting them too. Failure detection says so only after
// seconds, and a failed forward only if the node forwards anything: an
// owner whose clients hit only its own keys forwards nothing. So a node
// keeps, for each member, when it last heard from it (any call the member
// answered: a forward, a give-back, a backup or hand-off, a ping), pings
// every member it has not heard from within PingEvery, and counts as
// reachable only the members it heard from within FenceAfter (longer in a
// cluster of more than 6: see pingInterval). Package
// tierlimit cuts every limit to this side's share while the reachable
// members are not a majority (Router.SetShare).
const (
	// PingEvery is how often a Router pings the members it has not heard
	// from since the last ping.
	PingEvery = 200 * time.Millisecond
	// FenceAfter is how long a member counts as reachable after it last
	// answered (or after it joined the ring): four pings.
	FenceAfter = 4 * PingEvery
	// pingTimeout bounds one ping.
	pingTimeout = PingEvery
	// pingPeers is how many other members may each be pinged every
	// PingEvery; with more, each is pinged less often (pingInterval).
	pingPeers = 5
)

// pingInterval returns how long a member may go unheard before this node
// pings it, with members in the ring: PingEvery with up to pingPeers
// others, longer in proportion beyond, so that a node sends at most about
// pingPeers pings per PingEvery (25 a second) whatever the cluster's size:
// every member pinging every other every 200 ms grows with N² and starved
// 60 node processes sharing 2 CPUs until memberlist took live members for
// dead. FenceAfter grows with it (fenceAfter): 200 ms and 0.8 s up to 6
// members, 1.2 s and 4.8 s at 30, 2.4 s and 9.6 s at 60, about when
// memberlist's own failure detection would tell.
func pingInterval(members int) time.Duration {
	return PingEvery * time.Duration(max(1, (members-1+pingPeers-1)/pingPeers))
}

// fenceAfter returns how long a member counts as reachable after it last
// answered, with members in the ring: four ping intervals.
func fenceAfter(members int) time.Duration { return 4 * pingInterval(members) }

// Pinger is a forward.Peer that can be asked whether it answers at all,
// with nothing to count; package peer's Client is one. A Peer without it is
// heard from only through the calls made to it anyway.
type Pinger interface {
	Ping(ctx context.Context) error
}

// contacts is when this node last heard from each member of its ring. It
// takes the time as a parameter and does no I/O. It is safe for concurrent
// use.
type contacts struct {
	// mu guards m.
	mu sync.Mutex
	m  map[string]*contact
}

type contact struct {
	joined  time.Time // when it came into the ring, as far as this node knows
	heard   time.Time // when it last answered; zero: never
	pinging bool      // a ping is in flight
}

func newContacts() *contacts { return &contacts{m: make(map[string]*contact)} }

// track makes members, this node excepted, the members to keep track of
// at now: new ones count as just heard from (joined), and those no longer
// in the ring are forgotten.
func (c *contacts) track(members []string, self string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := make(map[string]bool, len(members))
	for _, m := range members {
		if m == self {
			continue
		}
		keep[m] = true
		if c.m[m] == nil {
			c.m[m] = &contact{joined: now}
		}
	}
	for m := range c.m {
		if !keep[m] {
			delete(c.m, m)
		}
	}
}

// heard records that member answered at now.
func (c *contacts) heard(member string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct := c.m[member]; ct != nil && now.After(ct.heard) {
		ct.heard = now
	}
}

// fresh reports whether member answered, or joined, within d before now.
func (c *contacts) fresh(member string, now time.Time, d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.m[member]
	return ct != nil && ct.last().Add(d).After(now)
}

// last returns when ct last counted as heard from.
func (ct *contact) last() time.Time {
	if ct.heard.After(ct.joined) {
		return ct.heard
	}
	return ct.joined
}

// toPing returns the members not heard from within d before now and not
// being pinged already, and marks them as being pinged: call pinged for
// each when its ping ends.
func (c *contacts) toPing(now time.Time, d time.Duration) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for m, ct := range c.m {
		if !ct.pinging && !ct.last().Add(d).After(now) {
			ct.pinging = true
			out = append(out, m)
		}
	}
	return out
}

// pinged records the end of a ping to member: answered at now if ok.
func (c *contacts) pinged(member string, now time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct := c.m[member]; ct != nil {
		ct.pinging = false
		if ok && now.After(ct.heard) {
			ct.heard = now
		}
	}
}

// SetShare tells the Router what part of the cluster this node's side of
// it holds: alive members out of known ones. While alive is not a strict
// majority of known, every limit is cut to ceil(limit × alive / known), so
// that the sides of a partition together admit the limit plus the
// minority's share (1.33 limits for a 2 + 1 split of 3), not one per
// side; with a majority, or known ≤ alive, limits are whole. Call it when
// membership changes and as failed members age out of known.
func (r *Router) SetShare(alive, known int) {
	if alive <= 0 || known <= alive || 2*alive > known {
		r.share.Store(0)
		return
	}
	r.share.Store(uint64(alive)<<32 | uint64(uint32(known)))
}

// Share returns the share of every limit this side applies, as SetShare
// last said: 1 with full limits, else alive / known.
func (r *Router) Share() float64 {
	s := r.share.Load()
	if s == 0 {
		return 1
	}
	return float64(s>>32) / float64(uint32(s))
}

// shareOf returns limit cut to this side's share, as SetShare says.
func (r *Router) shareOf(limit int) int {
	s := r.share.Load()
	if s == 0 {
		return limit
	}
	alive, known := int(s>>32), int(uint32(s))
	return (limit*alive + known - 1) / known
}

// Reachable returns how many members of the ring this node counts as
// reachable at now, itself included: those that answered a call or a ping
// (or joined the ring) within FenceAfter. A node cut off from the others
// sees this fall within FenceAfter of the cut, whether or not it forwards
// anything, long before failure detection drops its peers. A member that
// is only slow still answers its pings (they wait up to PingEvery, where a
// forward waits a few milliseconds), so it counts, though its breaker may
// be open: slowness makes this node decide that member's keys on its own,
// within its share, but does not cut every limit to this side's share. A
// Peer that is not a Pinger counts while its breaker is closed, as it
// cannot be asked.
func (r *Router) Reachable(now time.Time) int {
	members := r.ring.Members()
	r.contacts.track(members, r.self, now)
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 1
	for _, m := range members {
		if m == r.self {
			continue
		}
		if r.pingable(m) {
			if r.contacts.fresh(m, now, fenceAfter(len(members))) {
				n++
			}
			continue
		}
		if l := r.links[m]; l == nil || l.breaker.State(now) == forward.BreakerClosed {
			n++
		}
	}
	return n
}

// pingable reports whether the Peer of member can be pinged.
func (r *Router) pingable(member string) bool {
	p, ok := r.peers.Peer(member)
	_, can := p.(Pinger)
	return ok && can
}

// recordRTT adds a round trip of d to member's adaptive deadline, if it
// has one.
func (r *Router) recordRTT(member string, d time.Duration) {
	r.mu.RLock()
	l := r.links[member]
	r.mu.RUnlock()
	if l != nil && l.deadline != nil {
		l.deadline.Record(d)
	}
}

// Heard records that member answered a call at now: the Keeper reports its
// backups and hand-offs here, so that they count as contact too.
func (r *Router) Heard(member string, now time.Time) { r.contacts.heard(member, now) }

// ping pings, each in its own goroutine (r.pings), the members not heard
// from within PingEvery before now and not being pinged already.
func (r *Router) ping(ctx context.Context, now time.Time) {
	members := r.ring.Members()
	r.contacts.track(members, r.self, now)
	for _, m := range r.contacts.toPing(now, pingInterval(len(members))) {
		p, _ := r.peers.Peer(m)
		pinger, ok := p.(Pinger)
		if !ok {
			r.contacts.pinged(m, now, false)
			continue
		}
		r.pings.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			start := time.Now()
			err := pinger.Ping(pctx)
			took := time.Since(start)
			cancel()
			r.contacts.pinged(m, r.clock(), err == nil)
			if err == nil {
				r.recordRTT(m, took)
			}
		})
	}
}
