package surge

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Summary is what a Run shows, in figures. Times are in seconds, -1 where
// the event did not happen within the run (a node never reported it).
type Summary struct {
	Run  string `json:"run"`
	Mode string `json:"mode"`
	// SurgeStart and SurgeEnd bound the surge, in seconds since the start.
	SurgeStart float64 `json:"surge_start_s"`
	SurgeEnd   float64 `json:"surge_end_s"`
	// Paid names the tiers whose latencies the spans take together.
	Paid []string `json:"paid"`
	// Unloaded is the paid latency over the calm before the surge, its
	// first second left out (the client's connections being opened).
	Unloaded Span `json:"unloaded"`
	// Surge is the paid latency over the whole surge.
	Surge Span `json:"surge"`

	// ToDegraded is from the surge's start to when the last node reported
	// DEGRADED (its first poll that saw it); Written to the write itself
	// (its updated_at, by the writer's clock), and Why its reason.
	ToDegraded      float64 `json:"to_degraded_s"`
	DegradedWritten float64 `json:"degraded_written_s"`
	DegradedWhy     string  `json:"degraded_why,omitempty"`
	// AfterSwitch is the paid latency from the first whole second after
	// every node reported DEGRADED to the surge's end; nil without one.
	AfterSwitch *Span `json:"after_switch,omitempty"`
	// Drained is from when every node reported DEGRADED to the start of
	// the first whole second in which no node's jobs queued (every poll's
	// own signal at most 1): how long the backlog admitted before the
	// switch took to run off. AfterDrain is the paid latency from that
	// second to the surge's end; nil if it did not drain in the surge.
	Drained    float64 `json:"drained_s"`
	DrainedBy  int     `json:"drained_by_second"`
	AfterDrain *Span   `json:"after_drain,omitempty"`
	// Cleared is from the surge's end to the start of the first whole
	// second in which no node's jobs queued; 0 if none queued then.
	Cleared float64 `json:"cleared_s"`

	// ToNormal is from the surge's end to when the last node reported
	// NORMAL after its last DEGRADED (negative if before the end); Why
	// the write's reason.
	ToNormal float64 `json:"to_normal_s"`
	// Normal reports that every node that went DEGRADED reported NORMAL
	// after its last DEGRADED (ToNormal then says when, before the
	// surge's end if negative).
	Normal    bool   `json:"normal,omitempty"`
	NormalWhy string `json:"normal_why,omitempty"`
	// Switches counts the status changes a node reported during the run,
	// the most of any node; Up and Down split that node's.
	Switches int `json:"switches"`
	Up       int `json:"up"`
	Down     int `json:"down"`

	// Tiers are each tier's outcomes over the surge.
	Tiers []Totals `json:"surge_tiers"`
	// SentLate and SendLagMax are the Run's: requests that left more than
	// 50 ms after they were due, and the latest one's lag, in
	// milliseconds. The latencies, measured from when each request was
	// due, include such lags.
	SentLate   int     `json:"sent_late"`
	SendLagMax float64 `json:"send_lag_max_ms"`
}

// Span is the paid tiers' latency over the seconds [From, To).
type Span struct {
	From int `json:"from_s"`
	To   int `json:"to_s"`
	// N counts the requests due in them; Failed those that got no answer
	// or were not sent (they count at the timeout).
	N      int `json:"n"`
	Failed int `json:"failed"`
	// P50, P99 and Max are in milliseconds, nearest rank.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Totals are one tier's outcomes over a span of seconds.
type Totals struct {
	Tier     string `json:"tier"`
	Due      int    `json:"due"`
	Admitted int    `json:"admitted"`
	Refused  int    `json:"refused"`
	Other    int    `json:"other"`
	Failed   int    `json:"failed"`
	TimedOut int    `json:"timed_out"`
	Unsent   int    `json:"unsent"`
	Deferred int    `json:"deferred,omitempty"`
}

// PaidSpan returns the paid tiers' latency over seconds [from, to) of r,
// clipped to the run.
func PaidSpan(r *Run, from, to int) Span {
	from, to = max(from, 0), min(to, r.Seconds)
	sp := Span{From: from, To: to}
	var all []float64
	for _, name := range r.Paid {
		t := r.Tier(name)
		if t == nil {
			continue
		}
		for s := from; s < to; s++ {
			all = append(all, t.Latency[s]...)
			sp.Failed += t.Failed[s] + t.Unsent[s]
		}
	}
	slices.Sort(all)
	sp.N = len(all)
	sp.P50, sp.P99, sp.Max = Quantile(all, 0.5), Quantile(all, 0.99), Quantile(all, 1)
	return sp
}

// PaidSeconds returns the paid tiers' latency per second of r: its p50
// and p99 in milliseconds, 0 where none was due.
func PaidSeconds(r *Run) (p50, p99 []float64) {
	p50, p99 = make([]float64, r.Seconds), make([]float64, r.Seconds)
	for s := range r.Seconds {
		sp := PaidSpan(r, s, s+1)
		p50[s], p99[s] = sp.P50, sp.P99
	}
	return p50, p99
}

// Summarize returns the figures of r, which must be valid.
func Summarize(r *Run) Summary {
	surge := r.Surge()
	start, end := surge.Start.Duration(), surge.End.Duration()
	s := Summary{Run: r.Name, Mode: r.Mode, SurgeStart: start.Seconds(), SurgeEnd: end.Seconds(), Paid: r.Paid,
		ToDegraded: -1, DegradedWritten: -1, Drained: -1, DrainedBy: -1, ToNormal: -1,
		SentLate: r.SentLate, SendLagMax: Millis(r.SendLagMax.Duration())}
	first, last := ceilSecond(start), floorSecond(end)
	s.Unloaded = PaidSpan(r, 1, floorSecond(start))
	s.Surge = PaidSpan(r, first, last)
	for _, t := range r.Tiers {
		tt := Totals{Tier: t.Name}
		for i := first; i < min(last, r.Seconds); i++ {
			tt.Due += t.Due(i)
			tt.Admitted += t.Admitted[i]
			tt.Refused += t.Refused[i]
			tt.Other += t.Other[i]
			tt.Failed += t.Failed[i]
			tt.TimedOut += t.TimedOut[i]
			tt.Unsent += t.Unsent[i]
			if t.Deferred != nil {
				tt.Deferred += t.Deferred[i]
			}
		}
		s.Tiers = append(s.Tiers, tt)
	}

	// The switch up: when every node reported DEGRADED after the surge began.
	var switched time.Duration
	written := time.Duration(-1)
	every := len(r.Nodes) > 0
	for _, n := range r.Nodes {
		i := slices.IndexFunc(n.Changes, func(c Change) bool { return c.Status == Degraded && c.At.Duration() >= start })
		if i < 0 {
			every = false
			continue
		}
		c := n.Changes[i]
		switched = max(switched, c.At.Duration())
		if c.Written != nil && (written < 0 || c.Written.Duration() < written) {
			written = c.Written.Duration()
		}
		if s.DegradedWhy == "" {
			s.DegradedWhy = c.Why
		}
	}
	if written >= 0 {
		s.DegradedWritten = secs(written - start)
	}
	if every {
		s.ToDegraded = secs(switched - start)
		if from := ceilSecond(switched); from < last {
			sp := PaidSpan(r, from, last)
			s.AfterSwitch = &sp
		}
		if d := calmFrom(r, ceilSecond(switched)); d >= 0 {
			s.Drained, s.DrainedBy = secs(time.Duration(d)*time.Second-switched), d
			if d < last {
				sp := PaidSpan(r, d, last)
				s.AfterDrain = &sp
			}
		}
	}
	if d := calmFrom(r, ceilSecond(end)); d >= 0 {
		s.Cleared = max(secs(time.Duration(d)*time.Second-end), 0)
	} else {
		s.Cleared = -1
	}

	// The switch back: when every node that went DEGRADED reported NORMAL
	// after its last DEGRADED.
	var back time.Duration
	every, any := true, false
	for _, n := range r.Nodes {
		ups, downs := 0, 0
		lastDegraded := -1
		for i, c := range n.Changes {
			if i > 0 && c.Status != n.Changes[i-1].Status {
				if c.Status == Degraded {
					ups++
				} else {
					downs++
				}
			}
			if c.Status == Degraded {
				lastDegraded = i
			}
		}
		if ups+downs > s.Switches {
			s.Switches, s.Up, s.Down = ups+downs, ups, downs
		}
		if lastDegraded < 0 {
			continue
		}
		any = true
		j := slices.IndexFunc(n.Changes[lastDegraded:], func(c Change) bool { return c.Status == Normal })
		if j < 0 {
			every = false
			continue
		}
		c := n.Changes[lastDegraded+j]
		back = max(back, c.At.Duration())
		if s.NormalWhy == "" {
			s.NormalWhy = c.Why
		}
	}
	if any && every {
		s.ToNormal, s.Normal = secs(back-end), true
	}
	return s
}

// calmFrom returns the first second from from on in which every node
// answered with its load and none reported a signal above 1 (jobs
// queued), or -1.
func calmFrom(r *Run, from int) int {
	if len(r.Nodes) == 0 {
		return -1
	}
	for s := max(from, 0); s < r.Seconds; s++ {
		calm := true
		for _, n := range r.Nodes {
			if n.LoadPolls[s] == 0 || n.SignalMax[s] > 1 {
				calm = false
				break
			}
		}
		if calm {
			return s
		}
	}
	return -1
}

func ceilSecond(d time.Duration) int  { return int((d + time.Second - 1) / time.Second) }
func floorSecond(d time.Duration) int { return int(d / time.Second) }

// secs returns d in seconds, to the millisecond.
func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// WriteText writes s as a few lines a person reads.
func (s Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s (%s): surge %.0f-%.0f s\n", s.Run, s.Mode, s.SurgeStart, s.SurgeEnd)
	paid := strings.Join(s.Paid, "+")
	fmt.Fprintf(&b, "  %s latency, unloaded (s %s): %s\n", paid, s.Unloaded.seconds(), s.Unloaded)
	fmt.Fprintf(&b, "  %s latency, whole surge (s %s): %s\n", paid, s.Surge.seconds(), s.Surge)
	if s.ToDegraded >= 0 {
		fmt.Fprintf(&b, "  DEGRADED on every node %.1f s after the surge began", s.ToDegraded)
		if s.DegradedWritten >= 0 {
			fmt.Fprintf(&b, " (written %.1f s after it: %s)\n", s.DegradedWritten, s.DegradedWhy)
		} else {
			fmt.Fprintf(&b, " (%s)\n", s.DegradedWhy)
		}
	} else {
		b.WriteString("  DEGRADED: not on every node in the surge\n")
	}
	if s.AfterSwitch != nil {
		fmt.Fprintf(&b, "  %s latency, surge after the switch (s %s): %s\n", paid, s.AfterSwitch.seconds(), s.AfterSwitch)
	}
	if s.ToDegraded >= 0 {
		if s.Drained >= 0 {
			fmt.Fprintf(&b, "  backlog drained %.1f s after the switch (no node queueing from second %d)\n", s.Drained, s.DrainedBy)
		} else {
			b.WriteString("  backlog: not drained within the run\n")
		}
	}
	if s.AfterDrain != nil {
		fmt.Fprintf(&b, "  %s latency, surge after the drain (s %s): %s\n", paid, s.AfterDrain.seconds(), s.AfterDrain)
	}
	switch {
	case s.Cleared > 0:
		fmt.Fprintf(&b, "  after the surge: jobs queued for %.1f s more\n", s.Cleared)
	case s.Cleared < 0:
		b.WriteString("  after the surge: jobs queued until the run's end\n")
	}
	switch {
	case s.Normal && s.ToNormal >= 0:
		fmt.Fprintf(&b, "  NORMAL on every node %.1f s after the surge ended (%s)\n", s.ToNormal, s.NormalWhy)
	case s.Normal:
		fmt.Fprintf(&b, "  NORMAL on every node %.1f s BEFORE the surge ended (%s)\n", -s.ToNormal, s.NormalWhy)
	case s.ToDegraded >= 0 || s.Up > 0:
		b.WriteString("  NORMAL: not on every node by the run's end\n")
	}
	fmt.Fprintf(&b, "  state changes: %d (%d to DEGRADED, %d to NORMAL)\n", s.Switches, s.Up, s.Down)
	for _, t := range s.Tiers {
		fmt.Fprintf(&b, "  surge, %-10s due %6d  admitted %6d  refused %6d", t.Tier, t.Due, t.Admitted, t.Refused)
		if t.Failed+t.Unsent+t.Other > 0 {
			fmt.Fprintf(&b, "  no answer %d (timed out %d)  unsent %d  other %d", t.Failed, t.TimedOut, t.Unsent, t.Other)
		}
		if t.Deferred > 0 {
			fmt.Fprintf(&b, "  deferred (waiting out Retry-After) %d", t.Deferred)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  client: %d requests left more than 50 ms late; the latest %s late\n", s.SentLate, fmtMS(s.SendLagMax))
	_, err := io.WriteString(w, b.String())
	return err
}

// seconds names the span's seconds, such as "1-15".
func (sp Span) seconds() string { return fmt.Sprintf("%d-%d", sp.From, sp.To) }

// String gives the span's figures.
func (sp Span) String() string {
	if sp.N == 0 {
		return "no requests"
	}
	out := fmt.Sprintf("p50 %s  p99 %s  max %s  (%d requests", fmtMS(sp.P50), fmtMS(sp.P99), fmtMS(sp.Max), sp.N)
	if sp.Failed > 0 {
		out += fmt.Sprintf(", %d with no answer, at the timeout", sp.Failed)
	}
	return out + ")"
}

// fmtMS formats a latency in milliseconds: "105 ms", "2.41 s".
func fmtMS(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// WriteText writes the summary of every run of f, then, for each run
// without the switch, its paid latency over the seconds of each run with
// it after the switch and after the drain, to compare like with like.
func (f *File) WriteText(w io.Writer) error {
	var sums []Summary
	for i := range f.Runs {
		s := Summarize(&f.Runs[i])
		if err := s.WriteText(w); err != nil {
			return err
		}
		sums = append(sums, s)
	}
	var b strings.Builder
	for i, m := range sums {
		if m.Mode != ModeManual {
			continue
		}
		for _, a := range sums {
			if a.Mode != ModeAuto {
				continue
			}
			paid := strings.Join(m.Paid, "+")
			for _, sp := range []struct {
				name string
				sp   *Span
			}{{"after the switch", a.AfterSwitch}, {"after the drain", a.AfterDrain}} {
				if sp.sp == nil {
					continue
				}
				same := PaidSpan(&f.Runs[i], sp.sp.From, sp.sp.To)
				fmt.Fprintf(&b, "%s p99 %s in run %s (s %s): %s %s, %s %s\n", paid, sp.name, a.Run, sp.sp.seconds(),
					m.Run, fmtMS(same.P99), a.Run, fmtMS(sp.sp.P99))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
