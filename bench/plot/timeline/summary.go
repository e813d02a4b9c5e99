package timeline

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"time"
)

// Summary is what a Record shows, in figures.
type Summary struct {
	Phases []PhaseSummary
	// CostUnit is the Record's: what TierRate.Cost counts.
	CostUnit string
	// SendLagMax and SentLate are the Record's: how well the client kept
	// its schedule.
	SendLagMax time.Duration
	SentLate   int
}

// PhaseSummary is one phase in figures.
type PhaseSummary struct {
	Status     string
	Start, End Offset
	// Tiers are the mean rates over the phase's steady seconds.
	Tiers []TierRate
	// Steady are the seconds the means are over: the whole seconds inside
	// the phase, less its first when the phase began with a POST (that
	// second holds the change on its way to every node).
	Steady [2]int
	// Post is the phase's POST, nil for the first phase.
	Post *Post
	// Seen is, per node, how long after the POST was sent the node first
	// reported the phase's status (also after the phase, while the poll
	// went on); negative if it never did. Empty for the first phase.
	Seen []NodeSeen
	// Agreed is the longest of Seen, negative if a node never reported it.
	Agreed time.Duration
}

// TierRate is one tier's mean outcome per second over a span, and what
// came back in the phase's first second.
type TierRate struct {
	Tier string
	// Sent is the tier's rate, requests per second.
	Sent float64
	// Admitted, Refused, Other and Failed are means per second.
	Admitted, Refused, Other, Failed float64
	// Cost is the mean cost admitted per second (in the Summary's
	// CostUnit); HasCost says whether the Record counted it.
	Cost    float64
	HasCost bool
	// RefusedBy is the mean of each of the Record's RefusedBy per
	// second, nil if it had none.
	RefusedBy map[string]float64
	// FirstAdmitted and FirstRefused count the phase's first second.
	FirstAdmitted, FirstRefused int
	// LimitLow and LimitHigh are the least and the most X-RateLimit-Limit
	// seen in the steady seconds, 0 if none was.
	LimitLow, LimitHigh int
}

// NodeSeen is how long one node took to report a posted state.
type NodeSeen struct {
	Target, Name string
	After        time.Duration
}

// Summarize returns the figures of r, which must be valid.
func Summarize(r *Record) Summary {
	s := Summary{CostUnit: r.CostUnit, SendLagMax: r.SendLagMax.Duration(), SentLate: r.SentLate}
	for _, p := range r.Phases {
		ps := PhaseSummary{Status: p.Status, Start: p.Start, End: p.End, Post: p.Post}
		first := int((p.Start.Duration() + time.Second - 1) / time.Second) // first whole second inside
		last := min(int(p.End.Duration()/time.Second), r.Seconds)          // one past the last
		if p.Post != nil {
			first = int(p.Start.Duration()/time.Second) + 1
		}
		ps.Steady = [2]int{first, last}
		for _, t := range r.Tiers {
			tr := TierRate{Tier: t.Name, Sent: t.Rate, HasCost: t.CostAdmitted != nil}
			if n := last - first; n > 0 {
				tr.Admitted = mean(t.Admitted[first:last])
				if tr.HasCost {
					tr.Cost = mean(t.CostAdmitted[first:last])
				}
				for by, counts := range t.RefusedBy {
					if tr.RefusedBy == nil {
						tr.RefusedBy = make(map[string]float64, len(t.RefusedBy))
					}
					tr.RefusedBy[by] = mean(counts[first:last])
				}
				tr.Refused = mean(t.Refused[first:last])
				tr.Other = mean(t.Other[first:last])
				tr.Failed = mean(t.Failed[first:last])
				for i := first; i < last; i++ {
					if l := t.LimitMin[i]; l > 0 && (tr.LimitLow == 0 || l < tr.LimitLow) {
						tr.LimitLow = l
					}
					tr.LimitHigh = max(tr.LimitHigh, t.LimitMax[i])
				}
			}
			if i := int(p.Start.Duration() / time.Second); i < r.Seconds {
				tr.FirstAdmitted, tr.FirstRefused = t.Admitted[i], t.Refused[i]
			}
			ps.Tiers = append(ps.Tiers, tr)
		}
		if p.Post != nil {
			ps.Agreed = 0
			for _, n := range r.Nodes {
				after := seenAfter(n, p)
				ps.Seen = append(ps.Seen, NodeSeen{Target: n.Target, Name: n.Name, After: after})
				if after < 0 || ps.Agreed < 0 {
					ps.Agreed = -1
				} else {
					ps.Agreed = max(ps.Agreed, after)
				}
			}
		}
		s.Phases = append(s.Phases, ps)
	}
	return s
}

// seenAfter returns how long after p's POST was sent node n first reported
// p's status, or -1 if it did not before the phase ended.
func seenAfter(n Node, p Phase) time.Duration {
	for _, c := range n.Changes {
		if c.At >= p.Post.Sent && c.At <= p.End && c.Status == p.Status {
			return c.At.Duration() - p.Post.Sent.Duration()
		}
	}
	// A node that reported the state after the phase ended (the last
	// phase's, polled on after the load stopped) still counts.
	for _, c := range n.Changes {
		if c.At >= p.Post.Sent && c.Status == p.Status {
			return c.At.Duration() - p.Post.Sent.Duration()
		}
	}
	return -1
}

func mean(xs []int) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}

// WriteText writes s as a few lines a person reads.
func (s Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, p := range s.Phases {
		fmt.Fprintf(&b, "%s %.0f-%.0f s", p.Status, p.Start.Seconds(), p.End.Seconds())
		if p.Post != nil {
			fmt.Fprintf(&b, " (POST to %s", p.Post.Target)
			if p.Post.Node != "" {
				fmt.Fprintf(&b, " = %s", p.Post.Node)
			}
			fmt.Fprintf(&b, ": %d in %.1f ms", p.Post.HTTPStatus, (p.Post.Answered.Duration()-p.Post.Sent.Duration()).Seconds()*1000)
			if p.Agreed >= 0 {
				fmt.Fprintf(&b, "; every node reported it %.0f ms after the POST:", p.Agreed.Seconds()*1000)
			} else {
				fmt.Fprintf(&b, "; NOT every node reported it:")
			}
			for _, n := range p.Seen {
				name := n.Name
				if name == "" {
					name = n.Target
				}
				if n.After >= 0 {
					fmt.Fprintf(&b, " %s %.0f ms", name, n.After.Seconds()*1000)
				} else {
					fmt.Fprintf(&b, " %s never", name)
				}
			}
			b.WriteString(")")
		}
		fmt.Fprintf(&b, "\n  mean per second over s %d-%d:\n", p.Steady[0], p.Steady[1])
		for _, t := range p.Tiers {
			fmt.Fprintf(&b, "    %-10s sent %6.1f  admitted %6.1f  refused %6.1f", t.Tier, t.Sent, t.Admitted, t.Refused)
			if t.Refused > 0 && len(t.RefusedBy) > 0 {
				var by []string
				for _, dim := range Refusals(t.RefusedBy) {
					if v := t.RefusedBy[dim]; v > 0 {
						by = append(by, fmt.Sprintf("%s %.1f", dim, v))
					}
				}
				fmt.Fprintf(&b, " (by %s)", strings.Join(by, ", "))
			}
			if t.HasCost {
				fmt.Fprintf(&b, "  cost %.1f %s/s", t.Cost, cmp.Or(s.CostUnit, "units"))
			}
			if t.Other > 0 || t.Failed > 0 {
				fmt.Fprintf(&b, "  other %.1f  failed %.1f", t.Other, t.Failed)
			}
			if t.LimitLow > 0 {
				if t.LimitLow == t.LimitHigh {
					fmt.Fprintf(&b, "  limit %d", t.LimitLow)
				} else {
					fmt.Fprintf(&b, "  limit %d-%d", t.LimitLow, t.LimitHigh)
				}
			}
			if p.Post != nil {
				fmt.Fprintf(&b, "  (first second: %d admitted, %d refused)", t.FirstAdmitted, t.FirstRefused)
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "client schedule: requests that left more than 50 ms late: %d; the latest left %.0f ms late\n", s.SentLate, s.SendLagMax.Seconds()*1000)
	_, err := io.WriteString(w, b.String())
	return err
}
