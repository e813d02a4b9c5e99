package main

import "time"

// Run is a stretch of one key's requests in which the client got no 200.
type Run struct {
	// Refusals is how many of its requests were refused.
	Refusals int `json:"refusals"`
	// From and To are when the first and the last of them were sent.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Span is how long the run lasted, from its first refusal to its last.
func (r Run) Span() time.Duration { return r.To.Sub(r.From) }

// longestRun returns the longest run of refusals among recs (one key's
// requests sorted by Sent), looking only at the records for which in
// returns true. A refusal is a record for which refused returns true; a
// 200, or an answer that is not such a refusal, ends a run; a request
// that got no answer neither extends nor ends it, since the client saw
// neither an admission nor a refusal. Of two runs as long, the first wins.
func longestRun(recs []Record, in, refused func(i int) bool) Run {
	var best, cur Run
	for i, r := range recs {
		if !in(i) || !r.Answered() {
			continue
		}
		if r.Admitted() || !refused(i) {
			cur = Run{}
			continue
		}
		if cur.Refusals == 0 {
			cur.From = r.Sent
		}
		cur.Refusals++
		cur.To = r.Sent
		if cur.Refusals > best.Refusals {
			best = cur
		}
	}
	return best
}

// sentIn returns a predicate for longestRun: the record was sent in
// [from, to).
func sentIn(recs []Record, from, to time.Time) func(i int) bool {
	return func(i int) bool { return !recs[i].Sent.Before(from) && recs[i].Sent.Before(to) }
}

// needless returns a predicate for longestRun: the record was refused
// though the reference admits it.
func needless(recs []Record, ref []bool) func(i int) bool {
	return func(i int) bool { return recs[i].Refused() && ref[i] }
}
