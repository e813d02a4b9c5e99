// Package timeline holds one run of the health timeline: requests sent at a
// fixed rate per tier to a cluster while its health state goes NORMAL →
// DEGRADED → NORMAL, counted per second and tier, with the moments the
// state was posted and the moments each node reported it.
//
// A tier may also limit what its requests cost per window and how many run
// at once: then every request is a job with a cost, and the Record also
// holds, per second, the cost its admitted jobs were charged and which
// limit refused each refused request.
//
// A Record is what the run writes (as JSON, with Write) and what the plot
// reads back (Read), so a picture can be redrawn without a run. A Counter
// fills a Record's per-second counts while the run is under way, and
// Summarize turns a Record into the figures a person quotes: the rates per
// phase and how long the cluster took to agree on each state. The package
// sends nothing itself; cmd/timeline does.
package timeline

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/jsonfile"
)

// Offset is a time since the start of a run (second 0 of the counts). In
// JSON it is a number of milliseconds, to the microsecond.
type Offset time.Duration

// Duration returns o as a time.Duration.
func (o Offset) Duration() time.Duration { return time.Duration(o) }

// Seconds returns o in seconds.
func (o Offset) Seconds() float64 { return time.Duration(o).Seconds() }

// Second returns the counted second o lies in, the index of a per-second
// count: i for [i s, i+1 s). It reports false if o lies outside a run of
// seconds whole seconds.
func (o Offset) Second(seconds int) (int, bool) {
	if o < 0 {
		return 0, false
	}
	s := int(o.Duration() / time.Second)
	return s, s < seconds
}

// MarshalJSON writes o as milliseconds.
func (o Offset) MarshalJSON() ([]byte, error) {
	ms := float64(time.Duration(o).Round(time.Microsecond)) / float64(time.Millisecond)
	return strconv.AppendFloat(nil, ms, 'f', -1, 64), nil
}

// UnmarshalJSON reads milliseconds.
func (o *Offset) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("offset: %w", err)
	}
	if math.IsNaN(ms) || math.IsInf(ms, 0) || math.Abs(ms) > float64(math.MaxInt64/int64(time.Millisecond)) {
		return fmt.Errorf("offset %v ms: out of range", ms)
	}
	*o = Offset(math.Round(ms * float64(time.Millisecond)))
	return nil
}

// Record is one run. Its slices of per-second counts are indexed by the
// second since Start: index i counts the requests due in [i s, i+1 s).
type Record struct {
	// Start is the wall-clock time of offset 0.
	Start time.Time `json:"start"`
	// Targets are the nodes' base URLs, in the order requests went to them
	// (round-robin, as a load balancer would).
	Targets []string `json:"targets"`
	// WindowSeconds is the tiers file's counting window.
	WindowSeconds int `json:"window_seconds"`
	// CostUnit is what a cost counts, the tiers file's cost_unit (such as
	// audio-seconds); empty if the file has none.
	CostUnit string `json:"cost_unit,omitempty"`
	// Work is how long each admitted request held its node (GET
	// /test?work=), a GPU job's stand-in; 0 if not at all.
	Work Offset `json:"work_ms,omitempty"`
	// Phases are the states in force, in order; they cover the run.
	Phases []Phase `json:"phases"`
	// Tiers are the loads sent and what came back, one per tier.
	Tiers []Tier `json:"tiers"`
	// Nodes are the health states each node reported to the poll.
	Nodes []Node `json:"nodes"`
	// Seconds is the number of whole seconds counted (the length of every
	// count slice).
	Seconds int `json:"seconds"`
	// Requests are counted in the second they were due, on the senders'
	// fixed schedule. SendLagMax is the latest one left after it was due,
	// and SentLate counts those that left more than 50 ms late: a client
	// that could not keep its schedule (a busy machine) shows here.
	SendLagMax Offset `json:"send_lag_max_ms"`
	SentLate   int    `json:"sent_late"`
}

// Phase is a span of the run with one health state asked for.
type Phase struct {
	// Status is NORMAL or DEGRADED.
	Status string `json:"status"`
	// Start and End bound the phase: requests sent in [Start, End).
	Start Offset `json:"start_ms"`
	End   Offset `json:"end_ms"`
	// Post is the admin request that set Status at the phase's start; nil
	// for the first phase, whose state was already in force.
	Post *Post `json:"post,omitempty"`
}

// Post is one POST /system/health.
type Post struct {
	// Target is the base URL of the node it went to.
	Target string `json:"target"`
	// Node is the name of the node that answered.
	Node string `json:"node,omitempty"`
	// Sent and Answered bound the request.
	Sent     Offset `json:"sent_ms"`
	Answered Offset `json:"answered_ms"`
	// HTTPStatus is the response's status code, 0 if none came.
	HTTPStatus int `json:"http_status"`
	// Version is the version of the state the node answered with.
	Version string `json:"version,omitempty"`
	// Error says why the request failed, if it did.
	Error string `json:"error,omitempty"`
}

// Tier is the load sent with one tier's keys and its outcome per second.
type Tier struct {
	// Name is the tier's name in the tiers file.
	Name string `json:"name"`
	// Keys is how many of the tier's keys took turns.
	Keys int `json:"keys"`
	// Rate is the requests per second sent for the tier, over all its keys.
	Rate float64 `json:"rate_per_second"`
	// Burst, Limit and Degraded are the tier's limits per window (the
	// NORMAL limit, the SLA and the DEGRADED limit), per key.
	Burst    int `json:"burst"`
	Limit    int `json:"limit"`
	Degraded int `json:"degraded"`
	// Cost and Concurrency are the tier's limits, per key, on what its
	// requests cost per window (in the Record's CostUnit) and on how many
	// run at once; nil where the tier has none.
	Cost        *Limits `json:"cost,omitempty"`
	Concurrency *Limits `json:"concurrency,omitempty"`
	// Estimate is the cost each request reserved at admission (its
	// Tierlimit-Cost header, or the tier's default_estimate), and
	// CostPerJob what each admitted one was charged when it ended (the
	// cost its job reported, or with none the estimate); both 0 for a
	// tier without a cost limit.
	Estimate   int `json:"estimate,omitempty"`
	CostPerJob int `json:"cost_per_job,omitempty"`

	// Admitted counts 200 responses per second.
	Admitted []int `json:"admitted"`
	// CostAdmitted sums, per second, the cost the admitted requests' jobs
	// were charged, in the Record's CostUnit. Nil for a tier without a
	// cost limit, and in a record of a run before costs.
	CostAdmitted []int `json:"cost_admitted,omitempty"`
	// Refused counts 429 responses per second.
	Refused []int `json:"refused"`
	// RefusedBy splits Refused by the limit that refused, as the 429's
	// body named it: RefusedRequests, RefusedCost, RefusedConcurrency, or
	// RefusedUnnamed when it named none. Only the limits that refused
	// something are present; every second's counts add up to Refused's.
	// Nil in a record of a run that did not read the bodies, or refused
	// nothing.
	RefusedBy map[string][]int `json:"refused_by,omitempty"`
	// Other counts responses with any other status per second; OtherStatus
	// says which statuses, over the run.
	Other       []int          `json:"other"`
	OtherStatus map[string]int `json:"other_status,omitempty"`
	// Failed counts requests that got no response per second (a transport
	// error or the client's timeout).
	Failed []int `json:"failed"`
	// LimitMin and LimitMax are the least and the most X-RateLimit-Limit
	// seen per second, 0 where no response carried one.
	LimitMin []int `json:"limit_min"`
	LimitMax []int `json:"limit_max"`
}

// Limits are a tier's limits in one dimension, per key: in NORMAL (Burst),
// its SLA (Limit), in DEGRADED (Degraded).
type Limits struct {
	Burst    int `json:"burst"`
	Limit    int `json:"limit"`
	Degraded int `json:"degraded"`
}

// The keys of Tier.RefusedBy: what a 429's body said refused it ("limit").
const (
	RefusedRequests    = "requests"
	RefusedCost        = "cost"
	RefusedConcurrency = "concurrency"
	// RefusedUnnamed counts 429s whose body named no limit.
	RefusedUnnamed = "unnamed"
)

// refusalOrder is the order the limits are checked in.
var refusalOrder = []string{RefusedRequests, RefusedCost, RefusedConcurrency}

// Refusals returns the keys of by in the order a node checks the limits
// (requests, cost, concurrency), then any other in sorted order, then
// RefusedUnnamed.
func Refusals[V any](by map[string]V) []string {
	var out, rest []string
	for _, k := range refusalOrder {
		if _, ok := by[k]; ok {
			out = append(out, k)
		}
	}
	for k := range by {
		if !slices.Contains(refusalOrder, k) && k != RefusedUnnamed {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	out = append(out, rest...)
	if _, ok := by[RefusedUnnamed]; ok {
		out = append(out, RefusedUnnamed)
	}
	return out
}

// Node is what one node's health endpoint reported over the run.
type Node struct {
	// Target is the node's base URL.
	Target string `json:"target"`
	// Name is the node's name, as its answers give it.
	Name string `json:"name,omitempty"`
	// Changes lists the states it reported, each at the first poll that
	// saw it (At is when that answer arrived). The first is the state
	// found at the start.
	Changes []Change `json:"changes"`
	// Polls and PollErrors count the polls sent and those that failed.
	Polls      int `json:"polls"`
	PollErrors int `json:"poll_errors"`
}

// Change is a health state a node reported.
type Change struct {
	At      Offset `json:"at_ms"`
	Status  string `json:"status"`
	Version string `json:"version"`
	Origin  string `json:"origin,omitempty"`
}

// Tier returns the tier called name, or nil.
func (r *Record) Tier(name string) *Tier {
	for i := range r.Tiers {
		if r.Tiers[i].Name == name {
			return &r.Tiers[i]
		}
	}
	return nil
}

// Validate reports the first inconsistency in r: no phases or tiers, count
// slices of the wrong length, phases out of order, refusals by limit that
// do not add up to the refusals.
func (r *Record) Validate() error {
	if len(r.Phases) == 0 {
		return fmt.Errorf("record: no phases")
	}
	if len(r.Tiers) == 0 {
		return fmt.Errorf("record: no tiers")
	}
	if r.Seconds < 0 {
		return fmt.Errorf("record: seconds %d: negative", r.Seconds)
	}
	for i, p := range r.Phases {
		if p.End < p.Start {
			return fmt.Errorf("record: phase %d (%s): ends at %v ms, before its start %v ms", i, p.Status, p.End.Duration().Milliseconds(), p.Start.Duration().Milliseconds())
		}
		if i > 0 && p.Start < r.Phases[i-1].End {
			return fmt.Errorf("record: phase %d (%s): starts before phase %d ends", i, p.Status, i-1)
		}
	}
	for _, t := range r.Tiers {
		for name, s := range map[string][]int{
			"admitted": t.Admitted, "refused": t.Refused, "other": t.Other, "failed": t.Failed,
			"limit_min": t.LimitMin, "limit_max": t.LimitMax,
		} {
			if len(s) != r.Seconds {
				return fmt.Errorf("record: tier %s: %s has %d seconds, want %d", t.Name, name, len(s), r.Seconds)
			}
		}
		if t.CostAdmitted != nil && len(t.CostAdmitted) != r.Seconds {
			return fmt.Errorf("record: tier %s: cost_admitted has %d seconds, want %d", t.Name, len(t.CostAdmitted), r.Seconds)
		}
		for by, s := range t.RefusedBy {
			if len(s) != r.Seconds {
				return fmt.Errorf("record: tier %s: refused_by %s has %d seconds, want %d", t.Name, by, len(s), r.Seconds)
			}
		}
		if t.RefusedBy != nil {
			for i := range r.Seconds {
				n := 0
				for _, s := range t.RefusedBy {
					n += s[i]
				}
				if n != t.Refused[i] {
					return fmt.Errorf("record: tier %s: second %d: refused_by adds up to %d, refused is %d", t.Name, i, n, t.Refused[i])
				}
			}
		}
	}
	return nil
}

// End returns the end of the last phase.
func (r *Record) End() Offset { return r.Phases[len(r.Phases)-1].End }

// Write writes r to w as indented JSON.
func Write(w io.Writer, r *Record) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	return nil
}

// Read decodes a Record from rd and validates it.
func Read(rd io.Reader) (*Record, error) { return jsonfile.Read[Record](rd, "read timeline") }

// ReadFile reads the Record in the file at path.
func ReadFile(path string) (*Record, error) { return jsonfile.ReadFile(path, Read) }
