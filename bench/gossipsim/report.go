package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/health"
)

// Markers around the generated part of the doc.
const (
	beginMarker = "<!-- gossip:begin -->"
	endMarker   = "<!-- gossip:end -->"
)

// healthMult is cluster's minRetransmitMult (cluster/node.go): the health
// queue sends each state max(RetransmitMult, 8) * ceil(log10(M+1)) times.
const healthMult = 8

// runInfo describes the whole invocation.
type runInfo struct {
	total time.Duration
	args  []string
}

// report returns the markdown for results.
func report(results []*Result, info runInfo) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	p("Run %s UTC: `(cd bench && go run ./gossipsim %s)`, %s in all; %s, GOMAXPROCS %d on %d CPUs, memberlist %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), strings.Join(info.args, " "), info.total.Round(time.Second),
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), moduleVersion("github.com/hashicorp/memberlist"))

	var main, checks []*Result
	for _, r := range results {
		if r.Spec.Laggards > 0 {
			checks = append(checks, r)
		} else {
			main = append(main, r)
		}
	}
	sizes := sizesOf(results)

	if len(main) > 0 {
		p("#### Health broadcast\n\n")
		p("One member writes a new state (the %d-byte message below); every member that adopts it queues it again, as package cluster does. ", healthBytes())
		p("Times are from the write; *rounds* is the median time to reach every member over GossipInterval. ")
		p("Bytes are everything members send (gossip, probes, push/pull), per member; *extra* is what one broadcast adds over idle in the %s after its write. ", lanPhases.Window)
		p("Members run with memberlist's compression off, to leave the CPU to their timers, and the bytes are what compression would have made of them, from a sample of one packet in %d; the *%s* row runs with compression on, as package cluster does, and its bytes are counted, not estimated.\n\n", sampleEvery, compressedLabel)
		p("| settings | M | half reached, median | all reached, median | all reached, max | rounds | missed | idle B/s per member | B/s per member while spreading | extra bytes per member per broadcast |\n")
		p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range main {
			p("| %s | %d | %s | %s | %s | %.1f | %d | %.0f | %.0f | %.0f |\n", r.Spec.Label, r.Spec.Members,
				dur(quantile(r.Half, 0.5)), dur(quantile(r.Reach, 0.5)), dur(quantile(r.Reach, 1)),
				float64(quantile(r.Reach, 0.5))/float64(r.Config.GossipInterval), r.Missed,
				r.Idle, r.During, r.Extra)
		}
		p("\n%d broadcasts per row. ", main[0].Spec.Broadcasts)
		p("The health queue sends each state max(RetransmitMult, %d) x ceil(log10(M+1)) times (cluster/node.go minRetransmitMult): ", healthMult)
		var limits []string
		for _, m := range sizes {
			limits = append(limits, fmt.Sprintf("%d at M=%d", retransmitLimit(healthMult, m), m))
		}
		p("%s, whatever RetransmitMult is between 2 and 8; RetransmitMult only changes memberlist's own messages (alive, suspect, dead). ", strings.Join(limits, ", "))
		p("Every member passing a state on that many times, a member misses all the copies with a chance of about e^-%d = %.0e a broadcast (the naive model of the join table below); memberlist's RetransmitMult 4 alone would give e^-%d = %.0e.\n\n",
			retransmitLimit(healthMult, sizes[len(sizes)-1]), missProbability(retransmitLimit(healthMult, sizes[len(sizes)-1])),
			retransmitLimit(4, sizes[len(sizes)-1]), missProbability(retransmitLimit(4, sizes[len(sizes)-1])))

		p("#### Join, a late joiner, failure detection\n\n")
		p("*Join*: from the last of M members starting (all join one seed) until every member sees M alive. ")
		p("A member that got none of the alive messages about another sees it only after a push/pull; *pairs missing* counts such (member, unseen member) pairs when the join bound passed, next to a naive model, M(M-1)/2 x e^-limit with limit = RetransmitMult x ceil(log10(M+1)) sends per member, which counts too many sends: the limit is taken from the members a member knows at each send, so one that still knows few retires an alive message early. ")
		p("*Join gossip after*: how long memberlist's own alive messages kept going after the join, or after the join bound if pairs were missing (until a %s with at most one gossip packet per 100 members), and the bytes each member sent from its start until then. ", lanPhases.Tick)
		p("*Late joiner*: a member started after the broadcasts, until it has the state (its join is a push/pull). ")
		p("*Failure*: %d members stop at once without leaving; from then until every other member sees each dead. ", main[0].Spec.Victims)
		p("*False failures*: times a member saw fewer alive than before, before the stop (zero means the CPU kept up with the probes).\n\n")
		p("| settings | M | join | pairs missing after %s (naive model) | join gossip after | join KB per member | late joiner | failure seen by all: median / max | false failures | dropped packets | CPU cores busy | run |\n", lanPhases.Join)
		p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range main {
			dead := dur(quantile(r.Dead, 0.5)) + " / " + dur(quantile(r.Dead, 1))
			if r.DeadLeft > 0 {
				dead += fmt.Sprintf(" (%d not seen in %s)", r.DeadLeft, r.Spec.Phases.Dead)
			}
			quiet := dur(r.Quiet)
			switch {
			case r.Quiet == 0:
				quiet = "0 ms"
			case r.Quiet < 0:
				quiet = fmt.Sprintf("> %s", r.Spec.Phases.Quiet)
			}
			p("| %s | %d | %s | %d (%.2g) | %s | %.0f | %s | %s | %d | %d | %.2f | %s |\n", r.Spec.Label, r.Spec.Members,
				joinCell(r), r.JoinPairs, expectedMissingPairs(r.Config.RetransmitMult, r.Spec.Members),
				quiet, r.JoinBytes/1000, dur(r.LateJoin), dead, r.FalseFailures, r.Dropped,
				r.CPU.Seconds()/r.Wall.Seconds(), r.Wall.Round(time.Second))
		}
		p("\nmemberlist at these sizes (ProbeInterval 1s, SuspicionMult 4, SuspicionMaxTimeoutMult 6): ")
		var susp []string
		for _, m := range sizes {
			least := suspicionTimeout(4, m, time.Second)
			susp = append(susp, fmt.Sprintf("M=%d: suspicion timeout %s, shrinking from %s as others confirm; its own messages sent %d times (RetransmitMult 4)",
				m, dur(least), dur(6*least), retransmitLimit(4, m)))
		}
		p("%s.\n\n", strings.Join(susp, "; "))
	}

	if len(checks) > 0 {
		p("#### Push/pull catch-up, measured\n\n")
		p("%d members drop every gossip (user) message they receive, and nothing else, so they learn a state only by push/pull. ", checks[0].Spec.Laggards)
		p("Times are from the write. memberlist scales the interval with the cluster (pushPullScale); *T* is the scaled interval. ")
		p("The model, for members that push/pull at independent random times: a member's own push/pull comes after U(0, T), the others pick it about once per T, so it waits T/e = 0.37 T on average and rarely more than T. ")
		p("The members here start one after another over one T, and still push/pull in step (memberlist staggers a member's first push/pull by U(0, PushPullInterval) only, then adds the interval scaled to the cluster size it sees, which grows as members join): in bursts, as a cluster whose members started together does. A member that missed a state then waits for the next burst, longer than the model.\n\n")
		p("| PushPullInterval | M | T | samples | median | mean | max | mean / T | max / T | model mean (T/e) | not caught up | run |\n")
		p("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range checks {
			T := pushPullScale(r.Config.PushPullInterval, r.Spec.Members)
			p("| %s | %d | %s | %d | %s | %s | %s | %.2f | %.2f | %s | %d | %s |\n", r.Config.PushPullInterval, r.Spec.Members, dur(T),
				len(r.Laggard), dur(quantile(r.Laggard, 0.5)), dur(mean(r.Laggard)), dur(quantile(r.Laggard, 1)),
				float64(mean(r.Laggard))/float64(T), float64(quantile(r.Laggard, 1))/float64(T),
				dur(expectedPushPullWait(T)), r.LaggardLeft, r.Wall.Round(time.Second))
		}
		p("\n")
	}

	if len(main) > 0 {
		p("#### Push/pull at the intervals of the sweep, derived\n\n")
		p("T from pushPullScale; the waits as T/e (the model, members at random phases) and as the mean / T and max / T measured above (members in step). Bytes: one exchange (both full states, measured in the push/pull checks, whose members push/pull often enough to count) per member per T.\n\n")
		p("| PushPullInterval | M | T | mean wait for a member that missed a state: model / measured | worst: T / measured | push/pull B/s per member |\n")
		p("|--:|--:|--:|--:|--:|--:|\n")
		for _, iv := range []time.Duration{15 * time.Second, 30 * time.Second, 60 * time.Second} {
			for _, m := range sizes {
				T := pushPullScale(iv, m)
				meanCell, worstCell, bytesCell := dur(expectedPushPullWait(T)), dur(T), "-"
				if c := findSize(checks, m); c != nil && len(c.Laggard) > 0 {
					cT := float64(pushPullScale(c.Config.PushPullInterval, m))
					meanCell += " / " + dur(time.Duration(float64(mean(c.Laggard))/cT*float64(T)))
					worstCell += " / " + dur(time.Duration(float64(quantile(c.Laggard, 1))/cT*float64(T)))
					if c.PerXchg > 0 {
						bytesCell = fmt.Sprintf("%.0f (%.1f KB an exchange)", c.PerXchg/T.Seconds(), c.PerXchg/1000)
					}
				}
				p("| %s | %d | %s | %s | %s | %s |\n", iv, m, dur(T), meanCell, worstCell, bytesCell)
			}
		}
		p("\n")
	}

	var warn []string
	for _, r := range results {
		if r.Unfiltered > 0 {
			warn = append(warn, fmt.Sprintf("%s M=%d: %d packets to laggards could not be parsed and were dropped", r.Spec.Label, r.Spec.Members, r.Unfiltered))
		}
	}
	if len(warn) > 0 {
		p("Warnings: %s.\n\n", strings.Join(warn, "; "))
	}
	return b.String()
}

// joinCell describes when every member saw every other alive.
func joinCell(r *Result) string {
	switch {
	case r.JoinLeft == 0:
		return dur(r.Join)
	case r.JoinAll > 0:
		return fmt.Sprintf("%s, by push/pull (%d members behind at %s)", dur(r.JoinAll), r.JoinLeft, r.Spec.Phases.Join)
	default:
		return fmt.Sprintf("> %s (%d members behind at %s, %d pairs still missing at %s)",
			dur(r.JoinAt), r.JoinLeft, r.Spec.Phases.Join, r.JoinStill, dur(r.JoinAt))
	}
}

// healthBytes returns the size of a health message as package cluster
// gossips it (cluster/delegate.go encodeHealth: a kind byte and the JSON
// state), for a member named as the simulation names them.
func healthBytes() int {
	now := time.Now().UTC()
	s := health.State{Status: health.Degraded, Version: uint64(now.UnixMilli()) << 16, Origin: "m123", UpdatedAt: now}
	return 1 + len(s.Encode())
}

// findSize returns the first result at m members, or nil.
func findSize(rs []*Result, m int) *Result {
	for _, r := range rs {
		if r.Spec.Members == m {
			return r
		}
	}
	return nil
}

// sizesOf returns the distinct cluster sizes of rs, in order of first use.
func sizesOf(rs []*Result) []int {
	var out []int
	seen := make(map[int]bool)
	for _, r := range rs {
		if !seen[r.Spec.Members] {
			seen[r.Spec.Members] = true
			out = append(out, r.Spec.Members)
		}
	}
	return out
}

// dur formats d for a table: milliseconds below 10 s, else seconds.
func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// moduleVersion returns the version of module path this binary was built
// with, or "?".
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "?"
}

// replaceSection replaces what lies between the markers in the file at
// path with md, or appends the markers and md if the file has none. The
// file must exist: its introduction is written by hand.
func replaceSection(path, md string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	out, err := splice(doc, md)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// splice returns doc with md between its markers.
func splice(doc []byte, md string) ([]byte, error) {
	section := beginMarker + "\n" + md + endMarker
	i := bytes.Index(doc, []byte(beginMarker))
	j := bytes.Index(doc, []byte(endMarker))
	switch {
	case i < 0 && j < 0:
		out := bytes.TrimRight(doc, "\n")
		return append(out, []byte("\n\n"+section+"\n")...), nil
	case i < 0 || j < i:
		return nil, fmt.Errorf("markers %s and %s out of order or one missing", beginMarker, endMarker)
	}
	var out []byte
	out = append(out, doc[:i]...)
	out = append(out, section...)
	return append(out, doc[j+len(endMarker):]...), nil
}
