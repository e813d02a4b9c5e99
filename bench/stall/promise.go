package main

import "time"

// The promises a response makes, as README.md's HTTP contract states
// them, each holding "as long as nothing else is admitted for the key and
// the limit stays":
//
//   - a 429's Retry-After: the refused request, sent again after that many
//     seconds, is admitted;
//   - a 200's X-RateLimit-Remaining r: r requests sent now are admitted.
//
// The checks below judge them against what the one client of a key saw
// next. The client sends every request of its key, so "nothing else" is
// what it sent itself.

// RetryOutcome is what became of one Retry-After.
type RetryOutcome int

// What a Retry-After turned out to be.
const (
	// RetryUntested: no answered request was sent after the promised
	// moment before the run ended.
	RetryUntested RetryOutcome = iota
	// RetryKept: no request was admitted before the promised moment, and
	// the first one answered after it was admitted.
	RetryKept
	// RetryBroken: no request was admitted before the promised moment, and
	// the first one answered after it was refused.
	RetryBroken
	// RetryEarly: a request sent after the 429 came back, and before the
	// moment it promised, was admitted: the header said to wait longer
	// than needed.
	RetryEarly
)

// RetryCheck is the verdict on one 429's Retry-After.
type RetryCheck struct {
	Index   int          // the 429, in the key's records
	Outcome RetryOutcome // see RetryOutcome
	// Excess, for RetryEarly, is how much sooner than the promised moment
	// the admitted request was sent; BeyondRounding, that it was sent
	// before even the 429's send time plus Retry-After minus one second,
	// which the header's rounding up to whole seconds cannot explain.
	Excess         time.Duration
	BeyondRounding bool
	// Late, for RetryBroken, is how long after the promised moment the
	// next admitted request was sent; -1 when none was until the end.
	Late time.Duration
	// OtherNode, for RetryBroken, reports whether the refusal came from
	// another node than the one that made the promise.
	OtherNode bool
}

// checkRetry judges every 429 with a Retry-After among recs, one key's
// requests sorted by Sent. The promised moment is when the 429 came back
// plus Retry-After: the earliest a client reading it would send again.
func checkRetry(recs []Record) []RetryCheck {
	var out []RetryCheck
	for i, r := range recs {
		if !r.Refused() || r.H.RetryAfter < 0 {
			continue
		}
		promise := r.Done.Add(time.Duration(r.H.RetryAfter) * time.Second)
		c := RetryCheck{Index: i}
		next, first := -1, -1 // the first admission sent after the 429 came back; the first answer after the promise
		for j := i + 1; j < len(recs) && (next < 0 || first < 0); j++ {
			q := recs[j]
			if q.Sent.Before(r.Done) {
				continue // in flight with the 429: no one read its header before sending it
			}
			if next < 0 && q.Admitted() {
				next = j
			}
			if first < 0 && q.Answered() && !q.Sent.Before(promise) {
				first = j
			}
		}
		switch {
		case next >= 0 && recs[next].Sent.Before(promise):
			c.Outcome = RetryEarly
			c.Excess = promise.Sub(recs[next].Sent)
			c.BeyondRounding = recs[next].Sent.Before(r.Sent.Add(time.Duration(r.H.RetryAfter-1) * time.Second))
		case first < 0:
			c.Outcome = RetryUntested
		case recs[first].Admitted():
			c.Outcome = RetryKept
		default:
			c.Outcome = RetryBroken
			c.OtherNode = recs[first].Node != r.Node
			c.Late = -1
			if next >= 0 {
				c.Late = recs[next].Sent.Sub(promise)
			}
		}
		out = append(out, c)
	}
	return out
}

// RemainingCheck is the verdict on one 200's X-RateLimit-Remaining.
type RemainingCheck struct {
	Index    int // the 200, in the key's records
	Promised int // its Remaining
	// Tested is how many requests, answered, were sent after it came back
	// in the same window, up to Promised of them; Refused how many of
	// those were refused.
	Tested  int
	Refused int
	// Credit is how many requests may have spent part of the promise
	// before the tested ones: admitted while in flight with it, or never
	// answered (a request the client gave up on may still be counted).
	Credit int
	// Shortfall is Refused − Credit, at least 0: requests the promise
	// covered that were refused. Above 0, the header over-stated.
	Shortfall int
	// OtherNode reports, for a shortfall, whether every refusal came from
	// another node than the one that made the promise.
	OtherNode bool
}

// checkRemaining judges every 200's Remaining among recs (one key's
// requests sorted by Sent) against the requests the client sent after it
// in the same window, of length w from start. A Remaining of 0 promises
// nothing and is left out.
func checkRemaining(recs []Record, start time.Time, w time.Duration) []RemainingCheck {
	var out []RemainingCheck
	for i, r := range recs {
		if !r.Admitted() || r.H.Remaining <= 0 {
			continue
		}
		win := windowOf(start, w, r.Sent)
		c := RemainingCheck{Index: i, Promised: r.H.Remaining}
		for j, q := range recs {
			if j == i || !q.Sent.Before(r.Done) {
				continue
			}
			// In flight with r (sent before it came back and not answered
			// before it): it may have been decided after r.
			if q.Done.After(r.Done) && (q.Admitted() || !q.Answered()) {
				c.Credit++
			}
		}
		sameNode := 0
		for j := i + 1; j < len(recs) && c.Tested < c.Promised; j++ {
			q := recs[j]
			if q.Sent.Before(r.Done) {
				continue
			}
			if windowOf(start, w, q.Sent) != win {
				break
			}
			if !q.Answered() {
				c.Credit++
				continue
			}
			c.Tested++
			if !q.Admitted() {
				c.Refused++
				if q.Node == r.Node {
					sameNode++
				}
			}
		}
		c.Shortfall = max(0, c.Refused-c.Credit)
		c.OtherNode = c.Shortfall > 0 && sameNode == 0
		out = append(out, c)
	}
	return out
}

// OwnerCount compares the owner's count of a key, read from the answer to
// a probe sent to it, with the 200s the client had received.
type OwnerCount struct {
	// Probe is the admitted probe, in the key's records; -1 if no probe
	// was admitted (then Counted is at least the Limit of the last one).
	Probe int `json:"probe"`
	// Counted is the owner's count in the probe's window, the probe
	// included: its X-RateLimit-Limit minus X-RateLimit-Remaining.
	Counted int `json:"counted"`
	// Received is how many 200s the client received for requests sent in
	// that window up to the probe, the probe included.
	Received int `json:"received"`
	// Extra is Counted − Received: hits the owner counted that no client
	// received (with hits leased to other nodes and not spent yet, unless
	// the key had been idle for longer than a lease lasts).
	Extra int `json:"extra"`
}

// ownerCount reads the owner's count from the first admitted probe among
// recs (one key's requests sorted by Sent), windows of length w from
// start. In the first window, which has no window before it, the owner's
// count is exact: Limit − Remaining. It reports false if recs hold no
// probe.
func ownerCount(recs []Record, start time.Time, w time.Duration) (OwnerCount, bool) {
	c := OwnerCount{Probe: -1}
	last := -1
	for i, r := range recs {
		if !r.Probe {
			continue
		}
		last = i
		if r.Admitted() && r.H.Limit >= 0 && r.H.Remaining >= 0 {
			c.Probe = i
			break
		}
	}
	if last < 0 {
		return c, false
	}
	p := recs[last]
	if c.Probe >= 0 {
		p = recs[c.Probe]
		c.Counted = p.H.Limit - p.H.Remaining
	} else {
		c.Counted = max(p.H.Limit, 0)
	}
	win := windowOf(start, w, p.Sent)
	for _, r := range recs {
		if r.Admitted() && !r.Sent.After(p.Sent) && windowOf(start, w, r.Sent) == win {
			c.Received++
		}
	}
	c.Extra = c.Counted - c.Received
	return c, true
}

// RefillCheck is the verdict on the other half of a 200's promise: the
// draft's RateLimit field says r=<remaining>;t=<seconds until more than r
// requests fit>, so no more than r requests fit until t has passed.
type RefillCheck struct {
	Index    int // the 200, in the key's records
	Promised int // its r
	T        int // its t, seconds
	// Admitted is how many requests sent after the 200 came back and
	// before its send time plus t − 1 s (t is rounded up) were admitted.
	Admitted int
	// Under is Admitted − Promised, at least 0: above 0, more fit than the
	// header said, so it under-stated what the key had left.
	Under int
}

// checkRefill judges every 200 among recs (one key's requests sorted by
// Sent) whose RateLimit field has a t: within t, at most r of the requests
// the client sent next may have been admitted. An answer that promises no
// t (the whole limit free) is left out.
func checkRefill(recs []Record) []RefillCheck {
	var out []RefillCheck
	for i, r := range recs {
		if !r.Admitted() {
			continue
		}
		p, ok := sfParams(r.H.RateLimit)
		t, hasT := p["t"]
		if !ok || !hasT || t < 0 || r.H.Remaining < 0 {
			continue
		}
		c := RefillCheck{Index: i, Promised: r.H.Remaining, T: int(t)}
		until := r.Sent.Add(time.Duration(t-1) * time.Second)
		for _, q := range recs[i+1:] {
			if !q.Sent.Before(until) {
				break
			}
			if q.Admitted() && !q.Sent.Before(r.Done) {
				c.Admitted++
			}
		}
		c.Under = max(0, c.Admitted-c.Promised)
		out = append(out, c)
	}
	return out
}
