// Package surge holds the measurement of the automatic switch: a cluster
// whose nodes run their jobs on a few slots each carries a steady paid
// load, then a surge of free requests far over its capacity, then calm
// again, once with the state pinned to NORMAL (the switch off) and once
// with the switch on. Each Run records, per second, what came back per
// tier and how long it took, the health state each node reported and the
// cluster's load as each node saw it; Summarize turns a Run into the
// figures the issue asks for (the paid tiers' p99 unloaded and in the
// surge, how long the switch took each way, how many switches).
//
// A File is what cmd/surge writes (one run) and what cmd/plot joins
// (auto-data) and draws (auto), as JSON, so the picture can be redrawn
// without a run. The package sends nothing itself.
package surge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/jsonfile"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// Offset is a time since the start of a run, in JSON milliseconds.
type Offset = timeline.Offset

// The modes of a Run.
const (
	// ModeManual: NORMAL was posted before the run, which pins it: the
	// automatic switch leaves the state alone. The baseline.
	ModeManual = "manual"
	// ModeAuto: nothing was posted; the cluster's load switches the state.
	ModeAuto = "auto"
)

// The health states, as the nodes name them.
const (
	Normal   = "NORMAL"
	Degraded = "DEGRADED"
)

// File is the record of one or more runs.
type File struct {
	// Commit is the source the nodes and the client were built from, as
	// git describes it; empty if not known.
	Commit string `json:"commit,omitempty"`
	Runs   []Run  `json:"runs"`
}

// Run is one run of the scenario on a fresh cluster. Its slices of
// per-second values are indexed by the second since Start: index i holds
// the requests due in [i s, i+1 s), and the polls answered in it.
type Run struct {
	// Name names the run in the picture, such as "manual" or "auto".
	Name string `json:"name"`
	// Mode is ModeManual or ModeAuto.
	Mode string `json:"mode"`
	// Setup says what the nodes ran with beyond the scenario's flags, such
	// as "-queue-wait 10s"; empty if nothing.
	Setup string `json:"setup,omitempty"`
	// Start is the wall-clock time of offset 0.
	Start time.Time `json:"start"`
	// Targets are the nodes' base URLs, in the order requests went to
	// them (round-robin).
	Targets []string `json:"targets"`
	// WindowSeconds is the tiers file's counting window.
	WindowSeconds int `json:"window_seconds"`
	// Capacity is the jobs each node runs at once (its -capacity, as its
	// GET /system/health reported it); Work how long each job runs.
	Capacity int    `json:"capacity"`
	Work     Offset `json:"work_ms"`
	// Timeout is the longest the client waited for an answer; a request
	// not answered by then counts as failed, at Timeout in the latencies.
	Timeout Offset `json:"timeout_ms"`
	// MaxInFlight bounds the client's requests in flight; one due when
	// the bound is reached is not sent (Tier.Unsent), at Timeout in the
	// latencies.
	MaxInFlight int `json:"max_in_flight"`
	// HonourRetryAfter reports that a key that got a 429 sent nothing
	// until its Retry-After had passed (Tier.Deferred counts those).
	HonourRetryAfter bool `json:"honour_retry_after,omitempty"`
	// Poll is how often every node's GET /system/health was polled.
	Poll Offset `json:"poll_ms"`
	// Settings are the switch's marks and holds as the first node
	// reported them; nil if no node reported them.
	Settings *Settings `json:"settings,omitempty"`
	// Phases are the load's phases, in order; they cover the run. One is
	// named PhaseSurge.
	Phases []Phase `json:"phases"`
	// Paid names the tiers whose latencies are taken together as the
	// paid tiers' (they must keep theirs: Tier.Latency).
	Paid []string `json:"paid"`
	// Tiers are the loads sent and what came back, one per tier.
	Tiers []Tier `json:"tiers"`
	// Nodes are what each node's GET /system/health reported.
	Nodes []Node `json:"nodes"`
	// Seconds is the number of whole seconds counted (the length of every
	// per-second slice).
	Seconds int `json:"seconds"`
	// SendLagMax is the latest a request left after it was due, SentLate
	// counts those more than 50 ms late: a client that could not keep
	// its schedule shows here. Latencies are measured from when each
	// request was due, so such lateness is in them.
	SendLagMax Offset `json:"send_lag_max_ms"`
	SentLate   int    `json:"sent_late"`
	// Summary is Summarize's result when the run was written, for a
	// reader of the JSON; a reader of the package calls Summarize.
	Summary *Summary `json:"summary,omitempty"`
}

// Settings are the automatic switch's, as a node reports them.
type Settings struct {
	High     float64 `json:"high"`
	Low      float64 `json:"low"`
	UpHold   string  `json:"up_hold"`
	DownHold string  `json:"down_hold"`
}

// PhaseSurge names the surge's phase.
const PhaseSurge = "surge"

// Phase is a span of the run with one load.
type Phase struct {
	// Name is "calm" or PhaseSurge, or another name.
	Name string `json:"name"`
	// Start and End bound the phase: requests due in [Start, End).
	Start Offset `json:"start_ms"`
	End   Offset `json:"end_ms"`
	// Rates are the requests per second sent per tier; a tier not named
	// sends none.
	Rates map[string]float64 `json:"rates"`
}

// Tier is the load sent with one tier's keys and its outcome per second.
type Tier struct {
	Name string `json:"name"`
	// Keys is how many of the tier's keys took turns.
	Keys int `json:"keys"`
	// Burst, Limit and Degraded are the tier's request limits per key and
	// window: in NORMAL, its SLA, in DEGRADED.
	Burst    int `json:"burst"`
	Limit    int `json:"limit"`
	Degraded int `json:"degraded"`

	// Admitted counts 200s, Refused 429s, Other any other status.
	Admitted []int `json:"admitted"`
	Refused  []int `json:"refused"`
	Other    []int `json:"other"`
	// Failed counts requests that got no answer: the client's timeout
	// (TimedOut counts those, of Failed) or a transport error.
	Failed   []int `json:"failed"`
	TimedOut []int `json:"timed_out"`
	// Unsent counts requests not sent because the client's bound on
	// requests in flight was reached (Run.MaxInFlight).
	Unsent []int `json:"unsent"`
	// Deferred counts requests the client did not send because their key
	// was waiting out a 429's Retry-After (cmd/surge -retry-after); they
	// have no latency. Nil in a run whose client sent every request.
	Deferred []int `json:"deferred,omitempty"`
	// P50, P99 and Max are the latencies of the second's requests, in
	// milliseconds, nearest rank, every request counted: answered ones at
	// the time their answer took from when they were due, failed and
	// unsent ones at the run's Timeout (or later). 0 where no request was
	// due.
	P50 []float64 `json:"p50_ms"`
	P99 []float64 `json:"p99_ms"`
	Max []float64 `json:"max_ms"`
	// Latency holds, for a paid tier (Run.Paid), every request's latency
	// per second, in milliseconds to 0.1, sorted, counted as P99 counts
	// them; nil for the other tiers.
	Latency [][]float64 `json:"latency_ms,omitempty"`
}

// Due returns the requests due in second i, whatever came of them.
func (t *Tier) Due(i int) int {
	return t.Admitted[i] + t.Refused[i] + t.Other[i] + t.Failed[i] + t.Unsent[i]
}

// Node is what one node's GET /system/health reported over the run.
type Node struct {
	Target string `json:"target"`
	Name   string `json:"name,omitempty"`
	// Changes lists the states it reported, each at the first poll that
	// saw it: a new status, version or mode. The first is the state found
	// at the start.
	Changes []Change `json:"changes"`
	// Polls and PollErrors count the polls sent and those that failed.
	Polls      int `json:"polls"`
	PollErrors int `json:"poll_errors"`
	// Per second, over the polls answered in it: LoadPolls counts those
	// that carried the cluster's load; Saturation and Demand are the
	// means of its saturation and demand (cluster_load, the mean over the
	// members this node knows of their signal, and of their signal plus
	// the work DEGRADED refuses); Signal and SignalMax are the mean and
	// the largest of the node's own signal (load.signal: its requests in
	// flight over its capacity; above 1 its jobs queue). 0 where no poll
	// carried them.
	LoadPolls  []int     `json:"load_polls"`
	Saturation []float64 `json:"saturation"`
	Demand     []float64 `json:"demand"`
	Signal     []float64 `json:"signal"`
	SignalMax  []float64 `json:"signal_max"`
	// Writer is the member the node last named as the switch's writer.
	Writer string `json:"writer,omitempty"`
}

// Change is a health state a node reported.
type Change struct {
	// At is when the poll's answer arrived.
	At      Offset `json:"at_ms"`
	Status  string `json:"status"`
	Version string `json:"version"`
	Origin  string `json:"origin,omitempty"`
	// Mode is "auto", "manual" or "off"; Why what made the write.
	Mode string `json:"mode,omitempty"`
	Why  string `json:"why,omitempty"`
	// Written is when the write was made, by its updated_at (the writer's
	// wall clock against the client's); nil if it had none.
	Written *Offset `json:"written_ms,omitempty"`
}

// Tier returns the tier called name, or nil.
func (r *Run) Tier(name string) *Tier {
	for i := range r.Tiers {
		if r.Tiers[i].Name == name {
			return &r.Tiers[i]
		}
	}
	return nil
}

// Surge returns the surge's phase, or nil.
func (r *Run) Surge() *Phase {
	for i := range r.Phases {
		if r.Phases[i].Name == PhaseSurge {
			return &r.Phases[i]
		}
	}
	return nil
}

// End returns the end of the last phase.
func (r *Run) End() Offset { return r.Phases[len(r.Phases)-1].End }

// Validate reports the first inconsistency in r.
func (r *Run) Validate() error {
	if r.Name == "" {
		return fmt.Errorf("run: no name")
	}
	if r.Mode != ModeManual && r.Mode != ModeAuto {
		return fmt.Errorf("run %s: mode %q: want %q or %q", r.Name, r.Mode, ModeManual, ModeAuto)
	}
	if len(r.Phases) == 0 || len(r.Tiers) == 0 {
		return fmt.Errorf("run %s: no phases or no tiers", r.Name)
	}
	if r.Seconds < 0 || r.Capacity < 0 || r.Timeout <= 0 {
		return fmt.Errorf("run %s: seconds %d, capacity %d, timeout %v: want them positive", r.Name, r.Seconds, r.Capacity, r.Timeout.Duration())
	}
	if r.Surge() == nil {
		return fmt.Errorf("run %s: no phase named %q", r.Name, PhaseSurge)
	}
	for i, p := range r.Phases {
		if p.End < p.Start || (i > 0 && p.Start < r.Phases[i-1].End) {
			return fmt.Errorf("run %s: phase %d (%s) out of order", r.Name, i, p.Name)
		}
	}
	for _, name := range r.Paid {
		t := r.Tier(name)
		if t == nil {
			return fmt.Errorf("run %s: paid tier %s: no such tier", r.Name, name)
		}
		if t.Latency == nil {
			return fmt.Errorf("run %s: paid tier %s keeps no latencies", r.Name, name)
		}
	}
	for _, t := range r.Tiers {
		for name, n := range map[string]int{
			"admitted": len(t.Admitted), "refused": len(t.Refused), "other": len(t.Other), "failed": len(t.Failed),
			"timed_out": len(t.TimedOut), "unsent": len(t.Unsent), "p50_ms": len(t.P50), "p99_ms": len(t.P99), "max_ms": len(t.Max),
		} {
			if n != r.Seconds {
				return fmt.Errorf("run %s: tier %s: %s has %d seconds, want %d", r.Name, t.Name, name, n, r.Seconds)
			}
		}
		if t.Deferred != nil && len(t.Deferred) != r.Seconds {
			return fmt.Errorf("run %s: tier %s: deferred has %d seconds, want %d", r.Name, t.Name, len(t.Deferred), r.Seconds)
		}
		if t.Latency != nil {
			if len(t.Latency) != r.Seconds {
				return fmt.Errorf("run %s: tier %s: latency_ms has %d seconds, want %d", r.Name, t.Name, len(t.Latency), r.Seconds)
			}
			for i, l := range t.Latency {
				if len(l) != t.Due(i) {
					return fmt.Errorf("run %s: tier %s: second %d: %d latencies for %d requests", r.Name, t.Name, i, len(l), t.Due(i))
				}
			}
		}
		for i := range r.Seconds {
			if t.TimedOut[i] > t.Failed[i] {
				return fmt.Errorf("run %s: tier %s: second %d: %d timed out of %d failed", r.Name, t.Name, i, t.TimedOut[i], t.Failed[i])
			}
		}
	}
	for _, n := range r.Nodes {
		for name, l := range map[string]int{"load_polls": len(n.LoadPolls), "saturation": len(n.Saturation), "demand": len(n.Demand),
			"signal": len(n.Signal), "signal_max": len(n.SignalMax)} {
			if l != r.Seconds {
				return fmt.Errorf("run %s: node %s: %s has %d seconds, want %d", r.Name, n.Target, name, l, r.Seconds)
			}
		}
	}
	return nil
}

// Validate reports the first inconsistency in f: no runs, a run twice.
func (f *File) Validate() error {
	if len(f.Runs) == 0 {
		return fmt.Errorf("no runs")
	}
	var names []string
	for i := range f.Runs {
		if err := f.Runs[i].Validate(); err != nil {
			return err
		}
		if slices.Contains(names, f.Runs[i].Name) {
			return fmt.Errorf("run %s given twice", f.Runs[i].Name)
		}
		names = append(names, f.Runs[i].Name)
	}
	return nil
}

// Run returns the run called name, or nil.
func (f *File) Run(name string) *Run {
	for i := range f.Runs {
		if f.Runs[i].Name == name {
			return &f.Runs[i]
		}
	}
	return nil
}

// Write writes f to w as indented JSON, each run with its Summary.
func Write(w io.Writer, f *File) error {
	out := *f
	out.Runs = slices.Clone(f.Runs)
	for i := range out.Runs {
		s := Summarize(&out.Runs[i])
		out.Runs[i].Summary = &s
	}
	b, err := json.Marshal(&out)
	if err != nil {
		return fmt.Errorf("write surge: %w", err)
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", " "); err != nil {
		return fmt.Errorf("write surge: %w", err)
	}
	// An array of numbers on one line: a second's latencies, a series.
	flat := numberArray.ReplaceAllFunc(ind.Bytes(), func(m []byte) []byte {
		return space.ReplaceAll(m, nil)
	})
	_, err = w.Write(append(flat, '\n'))
	return err
}

var (
	numberArray = regexp.MustCompile(`\[\s*-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*\s*\]`)
	space       = regexp.MustCompile(`\s+`)
)

// WriteFile writes f to the file at path.
func WriteFile(path string, f *File) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(fh, f); err != nil {
		fh.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return fh.Close()
}

// Read decodes a File from rd and validates it.
func Read(rd io.Reader) (*File, error) { return jsonfile.Read[File](rd, "read surge") }

// ReadFile reads the File at path.
func ReadFile(path string) (*File, error) { return jsonfile.ReadFile(path, Read) }
