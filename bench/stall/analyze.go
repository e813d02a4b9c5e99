package main

import (
	"slices"
	"time"
)

// Capture is everything one run measured: what run.json holds, and all
// the report is made from.
type Capture struct {
	Commit  string        `json:"commit"`
	Command string        `json:"command"`
	Mode    string        `json:"mode"`
	Date    time.Time     `json:"date"`
	Machine string        `json:"machine"`
	Window  time.Duration `json:"window"`
	Plan    Plan          `json:"plan"`
	Nodes   []Node        `json:"nodes"`
	Owner   string        `json:"owner"`
	Keys    []Key         `json:"keys"`
	// T0 is when the first requests were due; Stop and Cont when the
	// owner was sent SIGSTOP and SIGCONT.
	T0   time.Time `json:"t0"`
	Stop time.Time `json:"stop"`
	Cont time.Time `json:"cont"`
	// Watch is how a node that stayed up saw the owner meanwhile.
	Watch memberWatch `json:"watch"`
	// Fallbacks is, per node, how many checks it decided locally
	// (tierlimit_local_fallbacks_total) from just before the stall to
	// three seconds after it.
	Fallbacks map[string]float64 `json:"fallbacks"`
	Records   []Record           `json:"records"`
}

// afterSpan is how long after SIGCONT the report still looks at the
// headers as "just after the stall".
const afterSpan = 3 * time.Second

// KeyResult is what the report says about one key.
type KeyResult struct {
	Key     Key
	Start   time.Time // its first window's
	Windows []WindowCount
	// During the stall: requests sent while the owner was stopped.
	During Phase
	// After the stall, to the end of the stall's window.
	After  Phase
	Retry  RetrySummary
	Rem    RemainingSummary
	Refill RefillSummary
	// Owner is the owner's count read by the key's probe; HasOwner is
	// false if the key sent none.
	Owner    OwnerCount
	HasOwner bool
	// Problems counts the answers whose headers contradict each other,
	// by what is wrong.
	Problems map[string]int
}

// Phase is what a key's requests sent in one stretch of time got.
type Phase struct {
	Sent, Admitted, Refused, NoAnswer int
	// Longest is the longest run of refusals (see longestRun).
	Longest Run
	// Needless counts the refusals the reference admits, LongestNeedless
	// the longest run of them.
	Needless        int
	LongestNeedless Run
	// Limits counts the answers by their X-RateLimit-Limit.
	Limits map[int]int
}

// RetrySummary adds up one key's RetryChecks.
type RetrySummary struct {
	Refusals         int // 429s with a Retry-After
	Kept, Broken     int
	BrokenOtherNode  int
	Early            int
	EarlyBeyondRound int
	MaxExcess        time.Duration // of the early ones
	MedianExcess     time.Duration
	MaxLate          time.Duration // of the broken ones; -1 if one was never admitted again
	Untested         int
}

// RemainingSummary adds up one key's RemainingChecks.
type RemainingSummary struct {
	Promises     int // 200s with Remaining > 0 and at least one request after them
	Broken       int
	OtherNode    int // broken, every refusal at another node than the promise's
	MaxShortfall int
	Untested     int
}

// analyze works out every key's result, in the order of run.Keys. recs
// must be sorted by variant, key and Sent (session.records).
func analyze(run Capture) []KeyResult {
	var out []KeyResult
	for _, k := range run.Keys {
		recs := keyRecords(run.Records, k)
		if len(recs) == 0 {
			continue
		}
		res := KeyResult{Key: k, Start: recs[0].Sent, Problems: map[string]int{}}
		ref := reference(recs, k.Limit, run.Window)
		res.Windows = countWindows(recs, ref, res.Start, run.Window, run.Plan.Windows)
		stallWindowEnd := res.Start.Add(time.Duration(windowOf(res.Start, run.Window, run.Stop)) * run.Window)
		res.During = phase(recs, ref, run.Stop, run.Cont)
		res.After = phase(recs, ref, run.Cont, stallWindowEnd)
		// Limits seen just after the stall: the owner may answer under
		// a share of the limit until it hears from the others again.
		res.After.Limits = phase(recs, ref, run.Cont, run.Cont.Add(afterSpan)).Limits
		res.Retry = summarizeRetry(checkRetry(recs))
		res.Rem = summarizeRemaining(checkRemaining(recs, res.Start, run.Window))
		res.Refill = summarizeRefill(checkRefill(recs), recs)
		res.Owner, res.HasOwner = ownerCount(recs, res.Start, run.Window)
		for _, r := range recs {
			if !r.Admitted() && !r.Refused() {
				continue
			}
			for _, p := range headerProblems(r.Status, r.H, r.Done) {
				res.Problems[p]++
			}
		}
		out = append(out, res)
	}
	return out
}

// keyRecords returns the records of k, in the order of recs.
func keyRecords(recs []Record, k Key) []Record {
	var out []Record
	for _, r := range recs {
		if r.Variant == k.Variant && r.Key == k.Role {
			out = append(out, r)
		}
	}
	return out
}

// phase sums up the requests of recs sent in [from, to); ref is the
// reference's decision for each.
func phase(recs []Record, ref []bool, from, to time.Time) Phase {
	p := Phase{Limits: map[int]int{}}
	in := sentIn(recs, from, to)
	for i, r := range recs {
		if !in(i) {
			continue
		}
		p.Sent++
		switch {
		case r.Admitted():
			p.Admitted++
		case r.Refused():
			p.Refused++
		case !r.Answered():
			p.NoAnswer++
		}
		if r.Refused() && ref[i] {
			p.Needless++
		}
		if r.Answered() && r.H.Limit >= 0 {
			p.Limits[r.H.Limit]++
		}
	}
	p.Longest = longestRun(recs, in, func(i int) bool { return recs[i].Refused() })
	p.LongestNeedless = longestRun(recs, in, needless(recs, ref))
	return p
}

func summarizeRetry(cs []RetryCheck) RetrySummary {
	var s RetrySummary
	var excess []time.Duration
	for _, c := range cs {
		s.Refusals++
		switch c.Outcome {
		case RetryKept:
			s.Kept++
		case RetryBroken:
			s.Broken++
			if c.OtherNode {
				s.BrokenOtherNode++
			}
			if s.MaxLate >= 0 && (c.Late < 0 || c.Late > s.MaxLate) {
				s.MaxLate = c.Late
			}
		case RetryEarly:
			s.Early++
			excess = append(excess, c.Excess)
			if c.BeyondRounding {
				s.EarlyBeyondRound++
			}
		default:
			s.Untested++
		}
	}
	if len(excess) > 0 {
		slices.Sort(excess)
		s.MaxExcess = excess[len(excess)-1]
		s.MedianExcess = excess[len(excess)/2]
	}
	return s
}

func summarizeRemaining(cs []RemainingCheck) RemainingSummary {
	var s RemainingSummary
	for _, c := range cs {
		if c.Tested == 0 {
			s.Untested++
			continue
		}
		s.Promises++
		if c.Shortfall > 0 {
			s.Broken++
			if c.OtherNode {
				s.OtherNode++
			}
			s.MaxShortfall = max(s.MaxShortfall, c.Shortfall)
		}
	}
	return s
}

// RefillSummary adds up one key's RefillChecks.
type RefillSummary struct {
	Promises int // 200s with a t
	Under    int // of those, more than r admitted within t
	// Worst is the check with the largest Under; Worst.Index is -1 if
	// none under-stated. WorstNode is the node that answered it.
	Worst     RefillCheck
	WorstNode string
}

func summarizeRefill(cs []RefillCheck, recs []Record) RefillSummary {
	s := RefillSummary{Worst: RefillCheck{Index: -1}}
	for _, c := range cs {
		s.Promises++
		if c.Under == 0 {
			continue
		}
		s.Under++
		if c.Under > s.Worst.Under {
			s.Worst, s.WorstNode = c, recs[c.Index].Node
		}
	}
	return s
}
