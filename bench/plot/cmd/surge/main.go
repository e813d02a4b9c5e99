// Command surge runs the measurement of the automatic switch once: a
// steady paid load, a surge of free requests far over the cluster's
// capacity, calm again, and records per second what came back per tier,
// how long it took, the state each node reported and the cluster's load as
// each node saw it (package surge).
//
//	surge -mode manual -targets http://127.0.0.1:8081,... -admin-token TOKEN \
//	    -config tiers.json -out manual.json
//
// The nodes must run with -capacity (their load signal) on a tiers file
// with the keys of -keys. With -mode manual it first POSTs NORMAL to the
// first node, which pins the state: the switch stays off, the baseline.
// With -mode auto it posts nothing and wants every node in auto mode.
// Either way it waits until every node reports NORMAL in that mode.
//
// The load is open-loop: each tier's requests leave on a fixed schedule
// whatever the answers (-base in every phase, -surge added during the
// surge), its keys taking turns, each request to the next node in turn,
// each GET /test?work=-work, a job that holds one of its node's slots.
// Each request's latency runs from when it was due; one with no answer
// within -timeout counts as failed, at the timeout in the latencies, and
// one due when -max-in-flight requests are out is not sent and counts the
// same way: the client's bounds show in the record, they hide nothing.
//
// Every node's GET /system/health is polled every -poll. After the load,
// the polls go on until every node reports NORMAL, for at most -settle.
// cmd/plot auto-data joins the runs' files; cmd/plot auto draws them.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/surge"
)

func main() { loadrun.Main("surge", run) }

// options are the command's flags.
type options struct {
	targets    []string
	token      string
	configPath string
	mode, name string
	setup      string
	commit     string
	keys       map[string]float64
	base       map[string]float64
	surge      map[string]float64
	before     time.Duration
	surgeFor   time.Duration
	after      time.Duration
	work       time.Duration
	timeout    time.Duration
	maxInFly   int
	retryAfter bool
	poll       time.Duration
	wait       time.Duration
	settle     time.Duration
	paid       []string
	out        string
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("surge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := loadrun.AddClusterFlags(fs, getenv)
	fs.StringVar(&o.configPath, "config", "bench/plot/tiers-auto.json", "tiers file the nodes run with: limits and keys (plots.sh adds the keys of -keys to bench/plot/tiers-auto.json's tiers)")
	fs.StringVar(&o.mode, "mode", "", `"manual": POST NORMAL first, which pins it (the switch off); "auto": post nothing (required)`)
	fs.StringVar(&o.name, "name", "", "the run's name in the record (default: the mode)")
	fs.StringVar(&o.setup, "setup", "", "what the nodes run with beyond the scenario's flags, for the record and the picture (such as \"-queue-wait 10s\")")
	fs.StringVar(&o.commit, "commit", "", "the source's commit, kept in the record")
	keys := fs.String("keys", "free=120,pro=10,enterprise=5", "keys per tier, taken in sorted order from -config")
	base := fs.String("base", "pro=30,enterprise=30", "requests per second per tier in every phase")
	surgeRate := fs.String("surge", "free=360", "requests per second per tier added during the surge")
	fs.DurationVar(&o.before, "before", 15*time.Second, "the calm before the surge, whole seconds")
	fs.DurationVar(&o.surgeFor, "surge-for", 30*time.Second, "the surge's length, whole seconds")
	fs.DurationVar(&o.after, "after", 30*time.Second, "the calm after the surge, whole seconds")
	fs.DurationVar(&o.work, "work", 100*time.Millisecond, "each request's job, GET /test?work=")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "longest the client waits for an answer")
	fs.IntVar(&o.maxInFly, "max-in-flight", 6000, "most requests in flight; one due beyond it is not sent")
	fs.BoolVar(&o.retryAfter, "retry-after", false, "honour Retry-After: a key that got a 429 sends nothing until it has passed (those requests count as deferred)")
	fs.DurationVar(&o.poll, "poll", 100*time.Millisecond, "how often every node's GET /system/health is polled")
	fs.DurationVar(&o.wait, "wait", 10*time.Second, "how long to wait, before the load, for every node to report NORMAL in the mode")
	fs.DurationVar(&o.settle, "settle", 20*time.Second, "how long to poll on, after the load, for every node to report NORMAL")
	paid := fs.String("paid", "pro,enterprise", "the tiers whose latencies are taken together as the paid tiers'")
	fs.StringVar(&o.out, "out", "", "file to write the record to (required)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := loadrun.NoArgs(fs); err != nil {
		return o, err
	}
	var err error
	if o.targets, o.token, err = cluster.Parse("the run reads and may set the health state"); err != nil {
		return o, err
	}
	o.paid = loadrun.SplitList(*paid)
	switch {
	case o.mode != surge.ModeManual && o.mode != surge.ModeAuto:
		return o, fmt.Errorf("-mode %q: want %s or %s", o.mode, surge.ModeManual, surge.ModeAuto)
	case o.out == "":
		return o, fmt.Errorf("-out is required")
	case o.poll <= 0 || o.timeout <= 0 || o.maxInFly < 1 || o.wait < 0 || o.settle < 0:
		return o, fmt.Errorf("-poll, -timeout and -max-in-flight must be positive, -wait and -settle not negative")
	}
	if err := loadrun.CheckWork(o.work, o.timeout); err != nil {
		return o, err
	}
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"-before", o.before}, {"-surge-for", o.surgeFor}, {"-after", o.after}} {
		if p.d < 0 || p.d%time.Second != 0 || (p.name == "-surge-for" && p.d == 0) {
			return o, fmt.Errorf("%s %v: want a whole number of seconds (the surge at least one)", p.name, p.d)
		}
	}
	if o.before < 2*time.Second {
		return o, fmt.Errorf("-before %v: want at least 2s (the first second is left out of the unloaded latency)", o.before)
	}
	if o.name == "" {
		o.name = o.mode
	}
	if o.keys, err = parsePerTier("-keys", *keys, false); err != nil {
		return o, err
	}
	if o.base, err = parsePerTier("-base", *base, true); err != nil {
		return o, err
	}
	if o.surge, err = parsePerTier("-surge", *surgeRate, true); err != nil {
		return o, err
	}
	for _, p := range o.paid {
		if o.keys[p] == 0 {
			return o, fmt.Errorf("-paid %s: not a tier of -keys", p)
		}
	}
	return o, nil
}

// run is the command: it parses args, runs the scenario once and writes
// its record.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Dir(o.out)); err != nil {
		return fmt.Errorf("-out %s: %w", o.out, err) // fail now rather than after the run
	}
	tiers, loads, err := loadTiers(o.configPath, o.keys, o.base, o.surge)
	if err != nil {
		return err
	}
	phases := o.phases()

	adminTransport := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}
	defer adminTransport.CloseIdleConnections()
	ad := loadrun.Admin{Client: &http.Client{Transport: adminTransport, Timeout: 2 * time.Second}, Token: o.token}
	found, err := prepare(ctx, o, ad, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, describeLoad(loads, phases, found.capacity, len(o.targets), o.work, tiers.Window))

	r, err := record(ctx, o, loads, phases, ad, found, stderr)
	if err != nil {
		return err
	}
	r.WindowSeconds = int(tiers.Window / time.Second)
	f := &surge.File{Commit: o.commit, Runs: []surge.Run{*r}}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("the record is not valid: %w", err)
	}
	if err := surge.WriteFile(o.out, f); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", o.out)
	return f.WriteText(stderr)
}

// phases returns the load's phases: the calm before, the surge, the calm
// after (left out if of no length).
func (o options) phases() []surge.Phase {
	both := make(map[string]float64, len(o.base)+len(o.surge))
	for t, r := range o.base {
		both[t] += r
	}
	for t, r := range o.surge {
		both[t] += r
	}
	at := func(d time.Duration) surge.Offset { return surge.Offset(d) }
	ps := []surge.Phase{
		{Name: "before", Start: 0, End: at(o.before), Rates: o.base},
		{Name: surge.PhaseSurge, Start: at(o.before), End: at(o.before + o.surgeFor), Rates: both},
	}
	if o.after > 0 {
		ps = append(ps, surge.Phase{Name: "after", Start: at(o.before + o.surgeFor), End: at(o.before + o.surgeFor + o.after), Rates: o.base})
	}
	return ps
}

// found is what the nodes reported before the load.
type found struct {
	capacity int
	settings *surge.Settings
}

// prepare puts the cluster in the run's mode (manual: POST NORMAL to the
// first node) and waits until every node reports NORMAL in it, with a
// load signal.
func prepare(ctx context.Context, o options, ad loadrun.Admin, stderr io.Writer) (found, error) {
	var f found
	if o.mode == surge.ModeManual {
		h, err := ad.Post(ctx, o.targets[0], `{"status":"NORMAL"}`)
		if err != nil {
			return f, err
		}
		fmt.Fprintf(stderr, "POST NORMAL to %s (%s): mode %s\n", o.targets[0], h.Node, h.Mode)
	}
	deadline := time.Now().Add(o.wait)
	for {
		ready, why := true, ""
		for _, t := range o.targets {
			h, err := ad.Health(ctx, t)
			if err != nil {
				return f, err
			}
			if o.mode == surge.ModeAuto && h.Mode == surge.ModeManual {
				return f, fmt.Errorf("%s (%s) is in manual mode (%s): POST {\"mode\":\"auto\"} first, or start a fresh cluster", t, h.Node, h.Why)
			}
			if h.Load == nil || h.Load.Capacity <= 0 {
				return f, fmt.Errorf("%s (%s) has no load signal: start the nodes with -capacity", t, h.Node)
			}
			if f.capacity != 0 && h.Load.Capacity != f.capacity {
				return f, fmt.Errorf("%s (%s) has capacity %d, another node %d: want them equal", t, h.Node, h.Load.Capacity, f.capacity)
			}
			f.capacity = h.Load.Capacity
			if c := h.Cluster; c != nil && f.settings == nil {
				f.settings = &surge.Settings{High: c.High, Low: c.Low, UpHold: c.UpHold, DownHold: c.DownHold}
			}
			if got := h.Status.String(); got != surge.Normal || h.Mode != o.mode {
				ready, why = false, fmt.Sprintf("%s (%s) reports %s in mode %s", t, h.Node, got, h.Mode)
			}
		}
		if ready {
			return f, nil
		}
		if time.Now().After(deadline) {
			return f, fmt.Errorf("after %v: %s, want NORMAL in mode %s", o.wait, why, o.mode)
		}
		if err := loadrun.SleepUntil(ctx, time.Now().Add(100*time.Millisecond)); err != nil {
			return f, err
		}
	}
}

// record runs the load and polls the nodes, and returns what it saw.
func record(ctx context.Context, o options, loads []tierLoad, phases []surge.Phase, ad loadrun.Admin, f found, stderr io.Writer) (*surge.Run, error) {
	total := phases[len(phases)-1].End.Duration()
	seconds := int(total / time.Second)
	// A short lead, so that the senders and pollers are ready at offset 0.
	start := time.Now().Add(200 * time.Millisecond)
	r := &surge.Run{Name: o.name, Mode: o.mode, Setup: o.setup, Start: start, Targets: o.targets, Capacity: f.capacity,
		Work: surge.Offset(o.work), Timeout: surge.Offset(o.timeout), MaxInFlight: o.maxInFly, HonourRetryAfter: o.retryAfter, Poll: surge.Offset(o.poll),
		Settings: f.settings, Phases: phases, Paid: o.paid, Seconds: seconds}
	count := surge.NewCounter(recordTiers(loads), seconds, o.timeout, o.paid)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watches := make([]*surge.Watch, len(o.targets))
	var watching sync.WaitGroup
	for i, t := range o.targets {
		watches[i] = surge.NewWatch(t, start, seconds)
		watching.Go(func() { poll(watchCtx, ad, t, watches[i], start, o.poll) })
	}

	transport := &http.Transport{MaxIdleConnsPerHost: o.maxInFly, IdleConnTimeout: time.Minute}
	defer transport.CloseIdleConnections()
	l := &load{Senders: loadrun.NewSenders(o.targets, start, o.maxInFly), client: &http.Client{Transport: transport},
		count: count, path: jobPath(o.work), timeout: o.timeout}
	if o.retryAfter {
		l.backoff = make(map[string]time.Duration)
	}
	var sending sync.WaitGroup
	for i, tl := range loads {
		sending.Go(func() { l.run(ctx, tl, phases, i, len(loads)) })
	}
	go report(watchCtx, stderr, watches, phases, start)
	sending.Wait()
	l.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Poll on until every node reports NORMAL, for at most -settle.
	deadline := time.Now().Add(o.settle)
	for !allReport(watches, surge.Normal) && time.Now().Before(deadline) {
		if err := loadrun.SleepUntil(ctx, time.Now().Add(o.poll)); err != nil {
			return nil, err
		}
	}
	stopWatch()
	watching.Wait()

	r.Tiers = count.Tiers()
	for _, w := range watches {
		r.Nodes = append(r.Nodes, w.Node())
	}
	r.SendLagMax = surge.Offset(l.LagMax())
	r.SentLate = l.Late()
	return r, nil
}

// poll polls target's health every interval into w until ctx ends; each
// poll waits for the one before.
func poll(ctx context.Context, ad loadrun.Admin, target string, w *surge.Watch, start time.Time, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		h, err := ad.Health(ctx, target)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.Failed()
		} else {
			w.Answer(surge.Offset(time.Since(start)), h)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// report prints, as the run goes, each change of a node's state and each
// phase's start.
func report(ctx context.Context, stderr io.Writer, ws []*surge.Watch, phases []surge.Phase, start time.Time) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	seen := make([]int, len(ws))
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for next < len(phases) && time.Since(start) >= phases[next].Start.Duration() {
			fmt.Fprintf(stderr, "%5.1f s  %s: %s\n", phases[next].Start.Seconds(), phases[next].Name, rates(phases[next].Rates))
			next++
		}
		for i, w := range ws {
			n := w.Node()
			for _, c := range n.Changes[min(seen[i], len(n.Changes)):] {
				fmt.Fprintf(stderr, "%5.1f s  %s: %s (mode %s) %s\n", c.At.Seconds(), n.Name, c.Status, c.Mode, c.Why)
			}
			seen[i] = len(n.Changes)
		}
	}
}

// allReport reports whether every node last reported status.
func allReport(ws []*surge.Watch, status string) bool {
	for _, w := range ws {
		if w.Status() != status {
			return false
		}
	}
	return true
}
