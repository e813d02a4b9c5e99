package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"slices"
	"time"
)

// spread sums up how long a set of nodes took for one thing, in seconds
// from the start of the wait.
type spread struct {
	// Want is how many nodes had to get there; Met how many did in time.
	Want int `json:"want"`
	Met  int `json:"met"`
	// Median and Max are over the nodes that got there.
	Median float64 `json:"median_s"`
	Max    float64 `json:"max_s"`
	// Missing names the nodes that did not get there in time.
	Missing []string `json:"missing,omitempty"`
	// PerNode is each node's time.
	PerNode map[string]float64 `json:"per_node,omitempty"`
}

// complete reports whether every node got there.
func (s spread) complete() bool { return s.Want > 0 && s.Met == s.Want }

// spreadOf sums up goals from since.
func spreadOf(since time.Time, goals []*goal) spread {
	s := spread{Want: len(goals), PerNode: map[string]float64{}}
	var took []float64
	for _, g := range goals {
		if !g.done() {
			s.Missing = append(s.Missing, g.node)
			continue
		}
		d := max(0, g.met.Time.Sub(since).Seconds())
		s.PerNode[g.node] = d
		took = append(took, d)
	}
	s.Met = len(took)
	s.Median, s.Max = median(took), maxOf(took)
	slices.Sort(s.Missing)
	return s
}

// median returns the median of xs, 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// maxOf returns the largest of xs, 0 for none.
func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs)
}

// membersResult is what the members command writes.
type membersResult struct {
	Since   time.Time `json:"since"`
	Timeout string    `json:"timeout"`
	Gone    []string  `json:"gone,omitempty"`
	// Ring: every watched node's ring holds exactly the nodes not gone.
	Ring spread `json:"ring"`
	// Changes counts the "members changed" lines, each a ring rebuild,
	// that the watched nodes logged until the last of them got there.
	Changes int `json:"changes"`
	// Left: every watched node heard that -left left, or failed
	// (memberlist).
	Left *spread `json:"left,omitempty"`
	// LeftAsFailed names the nodes that heard it failed instead.
	LeftAsFailed []string `json:"left_as_failed,omitempty"`
	// Exit: the node -exit logged its last line.
	Exit *spread `json:"exit,omitempty"`
}

func runMembers(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale members", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodesPath := fs.String("nodes", "", "nodes file")
	sinceMS := fs.Int64("since", 0, "start of the wait, Unix milliseconds (default: now)")
	gone := fs.String("gone", "", "comma-separated nodes no longer members: not watched, not expected")
	left := fs.String("left", "", "a node that leaves: also wait until every watched node logs that it left (or failed)")
	exit := fs.String("exit", "", "a node that stops: also wait for its last log line")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait")
	out := fs.String("out", "", "JSON file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodesPath == "" || *out == "" {
		return errors.New("members: -nodes and -out are required")
	}
	nodes, err := readNodes(*nodesPath)
	if err != nil {
		return err
	}
	since := time.Now()
	if *sinceMS > 0 {
		since = time.UnixMilli(*sinceMS)
	}
	goneNames := splitNames(*gone)
	var want []string
	for _, n := range nodes {
		if !slices.Contains(goneNames, n.Name) {
			want = append(want, n.Name)
		}
	}
	var ring, leftGoals, exitGoals []*goal
	for _, name := range want {
		ring = append(ring, &goal{node: name, ok: ringIs(want)})
		if *left != "" {
			leftGoals = append(leftGoals, &goal{node: name, ok: peerGone(*left)})
		}
	}
	if *exit != "" {
		exitGoals = append(exitGoals, &goal{node: *exit, ok: stopped})
	}
	wctx, cancel := context.WithDeadline(ctx, since.Add(*timeout))
	defer cancel()
	all := slices.Concat(ring, leftGoals, exitGoals)
	w := newWatcher(nodes)
	if err := w.watch(wctx, since, all); err != nil {
		return err
	}
	res := membersResult{Since: since, Timeout: timeout.String(), Gone: goneNames, Ring: spreadOf(since, ring), Changes: w.counts[msgMembers]}
	if len(leftGoals) > 0 {
		s := spreadOf(since, leftGoals)
		res.Left = &s
		for _, g := range leftGoals {
			if g.done() && g.met.Msg == msgPeerFailed {
				res.LeftAsFailed = append(res.LeftAsFailed, g.node)
			}
		}
	}
	if len(exitGoals) > 0 {
		s := spreadOf(since, exitGoals)
		res.Exit = &s
	}
	return writeJSON(*out, res)
}
