package ownership

import (
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
)

// book is what a node knows about the keys it does not own: the leases it
// holds on them and the owners' last answers, and from these the answer to
// a check that needs no owner, what to ask the owner for, and how much a
// check may admit when the owner cannot be reached. It is the pure core of
// the remote path: every method takes the time it decides at, and it does
// no I/O, starts no goroutine, logs nothing and counts no metric; it
// returns what it decided and what ended (endings), for the Router, its
// shell, to act on: give hits back, report events, send renewals.
//
// A book is safe for concurrent use: its tables are.
type book struct {
	leases   *leases // nil: leases are off
	answers  *answers
	leaseTTL time.Duration
	window   time.Duration
}

// ending is a lease the book ended, why (one of the Lease… constants), and
// the give-back of the hits it left unused (hits 0: nothing to give).
type ending struct {
	why  string
	give giveBack
}

// fromBook is the book's answer to a check it can answer without the
// owner, or what it needs from the shell.
type fromBook struct {
	d    bucket.Decision
	path int // PathLease or PathCached when decided; pathAsk when not
	// held is the lease this node holds on the key, spent or not: it
	// bounds a local decision.
	held *lease
	// renew, when set, is a renewal the shell must send (off the request
	// path) or, if it cannot, release (renew.ls.renewing).
	renew *renewal
	// ended is a lease that ended on this check.
	ended *ending
}

// pathAsk: the book cannot answer; the owner must be asked.
const pathAsk = -1

// check answers a check of hits hits of key under limit at now from a
// lease this node holds or from the owner's remembered refusal, if it can. A lease granted
// under another limit is ended (revoked), one that ran out of time ended
// (expired); the result says so, with the hits to give back.
func (b *book) check(now time.Time, key string, hits, limit int) fromBook {
	out := fromBook{path: pathAsk}
	if b.leases != nil {
		if ls := b.leases.get(key); ls != nil {
			out.held = ls
			if d, renew, ended, ok := b.fromLease(now, key, ls, hits, limit); ok {
				out.d, out.path, out.renew = d, PathLease, renew
				return out
			} else if ended != nil {
				out.ended = ended
			}
		}
	}
	if d, ok := b.answers.get(key, hits, limit, now); ok {
		out.d, out.path = d, PathCached
	}
	return out
}

// fromLease admits a check of hits hits for key under limit at now from
// lease ls, if it can, and returns the renewal to send when ls runs low. A lease granted
// under another limit is revoked, and one that ran out of time is ended;
// both return what they had left.
func (b *book) fromLease(now time.Time, key string, ls *lease, hits, limit int) (bucket.Decision, *renewal, *ending, bool) {
	if ls.limit != limit {
		return bucket.Decision{}, nil, b.end(key, ls, LeaseRevoked), false
	}
	n := now.UnixNano()
	left, ok := ls.take(n, hits)
	if !ok {
		var e *ending
		if n >= ls.until.Load() && !ls.pending() {
			e = b.end(key, ls, LeaseExpired)
		}
		return bucket.Decision{}, nil, e, false
	}
	var rn *renewal
	if ls.dueForRenewal(left) && ls.renewing.CompareAndSwap(false, true) {
		rn = &renewal{key: key, ls: ls, limit: limit, want: wantFor(ls.want(n, b.leaseTTL), hits)}
	}
	// Remaining is what this node holds: the owner had more left at the
	// last grant, but the other members may have taken it since, so more
	// would be a promise this node cannot keep.
	return bucket.Decision{Allowed: true, Limit: limit, Remaining: left, ResetAt: ls.reset}, rn, nil, true
}

// wantFor returns want, what a lease's rate asks for, raised to what two
// more checks of hits hits each take (a cost of many hits): a lease too
// small for the next check would send every check to the owner.
func wantFor(want, hits int) int { return min(max(want, 2*hits), MaxLeaseHits) }

// ask returns what a check of hits hits of key under limit at now that
// goes to the owner asks for: a lease of want hits, renewing the one with
// id leaseID (0: a new one), and the lease whose asking token the caller now holds
// and must give back (asking.renewing) once the answer is in; want is 0
// and asking nil when another check or a renewal is asking already, or
// when leases are off.
func (b *book) ask(now time.Time, key string, hits, limit int) (want int, leaseID uint64, asking *lease) {
	if b.leases == nil {
		return 0, 0, nil
	}
	ls, ok := b.leases.asking(key, limit)
	if !ok {
		return 0, 0, nil
	}
	return wantFor(ls.want(now.UnixNano(), b.leaseTTL), hits), ls.renewalOf(limit), ls
}

// answered takes the owner's answer res to a check of key under limit
// sent at sent, with members in the ring, and returns the decision to give
// the check: the owner's, plus what it granted this node. It keeps a lease
// in res and an answer worth keeping, and returns the leases it ended.
func (b *book) answered(sent time.Time, key string, limit, members int, res forward.Result) (bucket.Decision, []ending) {
	d := res.Decision
	if res.Granted > 0 {
		d.Remaining += res.Granted // this node's to spend
		return d, b.granted(sent, key, limit, members, res)
	}
	if worthKeeping(d, limit, members) {
		// Under the limit the owner applied, which may be less than limit
		// while it imports the key (Imports).
		b.answers.put(key, min(limit, max(d.Limit, 1)), d, sent)
	}
	return d, nil
}

// granted takes the lease in res, the answer to a check for key under
// limit sent at sent, with members in the ring. It returns the leases that
// ended: one the table had to make room for (from an earlier window or
// limit), or res's own lease if the table is full.
func (b *book) granted(sent time.Time, key string, limit, members int, res forward.Result) []ending {
	if rest := res.Decision; worthKeeping(rest, limit, members) {
		// What the owner had left beyond every grant: it bounds a local
		// decision if the owner cannot be reached later.
		b.answers.put(key, limit, rest, sent)
	}
	old, ok := b.leases.grant(key, limit, res, sent, b.window)
	if !ok {
		return []ending{{why: LeaseNoRoom, give: giveBack{key: key, id: res.LeaseID, limit: limit,
			start: res.ResetAt.Add(-b.window), hits: res.Granted}}}
	}
	if old != nil {
		if e := b.drain(key, old, LeaseExpired); e != nil { // a lease from an earlier window or limit
			return []ending{*e}
		}
	}
	return nil
}

// prepaid takes n hits of key that the owner counted, at now, for checks
// this node decided itself meanwhile and did not admit (or whose hits it
// sent the owner again): res is the owner's answer, under limit. They are
// this node's to admit, like a lease's: added to the key's lease if it is
// one of that window under limit, else a lease of their own, which the
// owner keeps no record of (given back, they take nothing back; left
// unspent, they stay counted). It returns a lease that ended to make room,
// if any. With leases off, or too near the window's end, they are lost:
// counted and never admitted.
func (b *book) prepaid(now time.Time, key string, limit int, res forward.Result, n int) []ending {
	if b.leases == nil || n <= 0 {
		return nil
	}
	start := res.ResetAt.Add(-b.window)
	if ls := b.leases.get(key); ls != nil && !ls.pending() && ls.limit == limit && ls.start.Equal(start) {
		ls.left.Add(int64(n))
		return nil
	}
	left := res.ResetAt.Sub(now)
	if left < minLease {
		return nil
	}
	g := forward.Result{Decision: res.Decision, Granted: n, LeaseFor: min(b.leaseTTL, left), WindowLeft: left}
	old, ok := b.leases.grant(key, limit, g, now, b.window)
	if !ok {
		return nil
	}
	if old != nil {
		if e := b.drain(key, old, LeaseExpired); e != nil {
			return []ending{*e}
		}
	}
	return nil
}

// end removes ls, key's lease, from the table if it is still there, and
// returns its ending.
func (b *book) end(key string, ls *lease, why string) *ending {
	if !b.leases.remove(key, ls) {
		return nil
	}
	return b.drain(key, ls, why)
}

// drain empties ls, a lease no longer in the table, and returns its
// ending; nil for a placeholder, which was granted nothing.
func (b *book) drain(key string, ls *lease, why string) *ending {
	if ls.pending() {
		return nil
	}
	return &ending{why: why, give: giveBack{key: key, id: ls.id, limit: ls.limit, start: ls.start, hits: ls.drain()}}
}

// budget returns how many hits a check of key under limit at now may
// admit on this node's own, counted apart, when the owner cannot be
// reached, with members in the ring and held the lease this node holds on
// key (spent, or nil); and, when the budget comes from what the owner last
// said, when the owner's window frees room (zero otherwise).
//
// The rule: each member may admit its share of the limit, ceil(limit /
// members), as if the members split it; if the owner said lately how much
// the key had left (an answer, or the rest beyond every grant at the last
// lease), the members other than the owner, which may all be deciding
// locally now, share that instead: ceil(left / (members − 1)) each, within
// the share. The last leaseParts × members hits of a window are the
// owner's alone to decide, as it leases none of them: locally, none.
func (b *book) budget(now time.Time, key string, limit, members int, held *lease) (int, time.Time) {
	members = max(1, members)
	share := localShare(limit, members)
	budget, until := share, time.Time{}
	if members == 1 {
		return budget, until
	}
	if left, end, ok := b.answers.remaining(key, limit, now); ok {
		budget, until = min(share, partLeft(left, members)), end
		if left < leaseParts*members {
			budget = 0
		}
	}
	if held != nil && !held.pending() && held.limit == limit {
		rest := int(held.rest.Load())
		budget = min(budget, partLeft(rest, members))
		if rest < leaseParts*members {
			budget = 0
		}
		until = held.reset
	}
	return budget, until
}

// ownerWindow returns when the owner's window that holds now began, if
// this node knows it: from the lease it held on key (held, or nil), or the
// owner's last answer about key. A window known to have ended is followed
// on by whole windows.
func (b *book) ownerWindow(now time.Time, key string, held *lease) (time.Time, bool) {
	end := time.Time{}
	if held != nil && !held.pending() {
		end = held.reset
	} else if e, ok := b.answers.windowEnd(key); ok {
		end = e
	}
	if end.IsZero() || b.window <= 0 {
		return time.Time{}, false
	}
	start := end.Add(-b.window)
	if now.Before(start) {
		return time.Time{}, false // a clock behind the owner's: not worth guessing
	}
	return start.Add(now.Sub(start) / b.window * b.window), true
}

// localShare is the share of limit one of members decides on its own:
// ceil(limit / members).
func localShare(limit, members int) int { return (limit + members - 1) / members }

// partLeft is one member's part of left, what the owner last said a key had
// left, shared by the members other than the owner: ceil(left / (members -
// 1)). members must be at least 2.
func partLeft(left, members int) int { return (left + members - 2) / (members - 1) }

// worthKeeping reports whether the owner's answer d under limit, with
// members in the ring, is worth keeping in the answers cache: a refusal,
// which answers the key's checks until it lapses, or an answer that leaves
// less than a local decision would spend, which holds one to its part of
// what is left (see budget). Any other answer would change nothing, so it
// costs no write and takes no room from refusals. (An older answer that
// left less may then stay until its window ends; a local decision is only
// the more careful for it.)
func worthKeeping(d bucket.Decision, limit, members int) bool {
	if !d.Allowed {
		return true
	}
	return members > 1 && partLeft(d.Remaining, members) < localShare(limit, members)
}
