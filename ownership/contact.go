package ownership

import (
	"context"
	"sync"
	"time"
)

// Contact: a node that cannot reach a majority of the members must not go
// on counting its own keys at the full limit, since the other side of the
// cut may be counting them too. Failure detection says so only after
// seconds, and a failed forward only if the node forwards anything: an
// owner whose clients hit only its own keys forwards nothing. So a node
// keeps, for each member, when it last heard from it (any call the member
// answered: a forward, a give-back, a backup or hand-off, a ping), pings
// every member it has not heard from within PingEvery, and counts as
// reachable only the members it heard from within FenceAfter. Package
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
)

// Pinger is a Peer that can be asked whether it answers at all, with
// nothing to count; package peer's Client is one. A Peer without it is
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
