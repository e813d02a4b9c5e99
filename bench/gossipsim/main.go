// Command gossipsim simulates the gossip of a large tierlimit cluster in one
// process: M real cluster.Nodes (hashicorp/memberlist underneath, on
// memberlist's LAN settings, each run changing one) on an in-memory network,
// no sockets. It
// times join convergence, the spread of a health broadcast, push/pull
// catch-up of a member that missed it, and failure detection, at each
// cluster size and memberlist setting it is asked for, and writes the
// tables between <!-- gossip:begin --> and <!-- gossip:end --> in -doc:
//
//	(cd bench && go run ./gossipsim -doc ../docs/gossip.md)
//
// It is not part of the product.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	// The members make garbage fast (memberlist allocates for every
	// message); collecting less often leaves more CPU to their timers.
	debug.SetGCPercent(800)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gossipsim:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	sizes      []int
	broadcasts int
	laggards   int
	victims    int
	sweep      bool
	long       bool
	check      time.Duration // base PushPullInterval of the push/pull check
	doc        string
	timeout    time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("gossipsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", "100,300", "cluster sizes, comma-separated")
	fs.IntVar(&o.broadcasts, "broadcasts", 4, "health broadcasts timed per run")
	fs.IntVar(&o.laggards, "laggards", 10, "members that miss the gossip in the push/pull check")
	fs.IntVar(&o.victims, "victims", 3, "members stopped at once to time failure detection")
	fs.BoolVar(&o.sweep, "sweep", true, "also run the GossipNodes, RetransmitMult and GossipInterval variants")
	fs.BoolVar(&o.long, "long", false, "also time push/pull at PushPullInterval 15s on the smallest size (about a minute more)")
	fs.DurationVar(&o.check, "check", 2*time.Second, "PushPullInterval of the push/pull check")
	fs.StringVar(&o.doc, "doc", "", "markdown file whose gossip section to replace (default: print the tables)")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for f := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return o, fmt.Errorf("-sizes: %q is not a size of 2 or more", f)
		}
		o.sizes = append(o.sizes, n)
	}
	if o.broadcasts < 1 || o.laggards < 0 || o.victims < 0 || o.check <= 0 || o.timeout <= 0 {
		return o, errors.New("-broadcasts must be at least 1, -laggards and -victims not negative, -check and -timeout positive")
	}
	return o, nil
}

// variants are the sweep: each changes one memberlist setting from
// DefaultLANConfig. GossipInterval 100ms is there to show whether the
// broadcast's reach is set by the gossip interval.
// Failure detection is timed only where the setting can change it much:
// the suspicion timeout, which dominates it, depends on none of them, and
// RetransmitMult decides how many members hear the dead message at once.
var variants = []struct {
	label    string
	s        Settings
	failures bool
}{
	{"GossipNodes 4", Settings{GossipNodes: 4}, false},
	{"GossipNodes 6", Settings{GossipNodes: 6}, false},
	{"RetransmitMult 2", Settings{RetransmitMult: 2}, true},
	{"RetransmitMult 6", Settings{RetransmitMult: 6}, true},
	{"GossipInterval 100ms", Settings{GossipInterval: 100 * time.Millisecond}, false},
}

// Labels of the runs with DefaultLANConfig's settings: the simulation's
// (compression off, its effect estimated) and the check with compression
// on, as package cluster runs.
const (
	defaultLabel    = "default"
	compressedLabel = "default, compressed"
)

// plan returns the runs o asks for, in order.
func plan(o options) []Spec {
	var specs []Spec
	full := func(label string, m int, s Settings, failures bool) Spec {
		spec := Spec{Label: label, Members: m, Settings: s, Broadcasts: o.broadcasts,
			LateJoin: true, Phases: lanPhases}
		if failures {
			spec.Victims = o.victims
		}
		return spec
	}
	for i, m := range o.sizes {
		specs = append(specs, full(defaultLabel, m, Settings{}, true))
		if i == 0 {
			c := full(compressedLabel, m, Settings{}, true)
			c.Compression = true
			specs = append(specs, c)
		}
		if o.sweep {
			for _, v := range variants {
				specs = append(specs, full(v.label, m, v.s, v.failures))
			}
		}
	}
	check := func(m int, interval time.Duration, broadcasts int) Spec {
		ph := lanPhases
		T := pushPullScale(interval, m)
		ph.Laggard = 2*T + 5*time.Second
		return Spec{Label: pushPullLabel(interval), Members: m,
			Settings: Settings{PushPullInterval: interval}, Broadcasts: broadcasts,
			Laggards: min(o.laggards, m-2), StartEvery: T / time.Duration(m), Phases: ph}
	}
	if o.laggards > 0 {
		for _, m := range o.sizes {
			specs = append(specs, check(m, o.check, 3))
		}
		if o.long {
			specs = append(specs, check(o.sizes[0], 15*time.Second, 1))
		}
	}
	return specs
}

// pushPullLabel names a push/pull check run.
func pushPullLabel(interval time.Duration) string {
	return "PushPullInterval " + interval.String()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	specs := plan(o)
	start := time.Now()
	var results []*Result
	for i, spec := range specs {
		fmt.Fprintf(stderr, "[%d/%d] %s, M=%d ...", i+1, len(specs), spec.Label, spec.Members)
		r, err := Run(ctx, spec)
		if err != nil {
			fmt.Fprintln(stderr)
			return err
		}
		fmt.Fprintf(stderr, " %s (join %s, reach median %s, dead median %s)\n", r.Wall.Round(time.Second),
			r.Join.Round(time.Millisecond), quantile(r.Reach, 0.5).Round(time.Millisecond), quantile(r.Dead, 0.5).Round(100*time.Millisecond))
		results = append(results, r)
	}
	md := report(results, runInfo{total: time.Since(start), args: args})
	if o.doc == "" {
		_, err := io.WriteString(stdout, md)
		return err
	}
	if err := replaceSection(o.doc, md); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s in %s\n", o.doc, time.Since(start).Round(time.Second))
	return nil
}
