// Command stall measures, against a running 3-node cluster on loopback,
// what a paying customer sees while the owner of its keys is paused, and
// checks that every rate-limit header the cluster sends tells the truth.
// bench/stall.sh starts the nodes and runs it; docs/stall.md shows and
// explains the results.
//
//	stall -nodes URL,URL,URL -pids PID,PID,PID -tiers tiers.json -admin-token T -out DIR [-doc docs/stall.md]
//	stall -from DIR/run.json -out DIR [-doc docs/stall.md]   (report again from a run's records)
//
// It picks, for each variant, a pro and an enterprise key that the owner
// (-owner) owns, and a witness key of each tier, by the nodes' own ring
// built from the names the nodes give, and checks with the nodes'
// tierlimit_store_keys once the keys are in use that the owner counts them
// all. Every key gets -rate requests a second: in variant "others"
// round-robin over the two nodes that are not the owner, in variant "all"
// over all three (requests to the stopped owner then wait, up to the
// client's -timeout). The variants run at the same time, on the same
// cluster and the same stall. -warmup into the keys' first window it
// stops the owner's process (SIGSTOP) for -stall, then lets it go on
// (SIGCONT; also at once if the program is interrupted), and loads every
// key until -windows windows have passed since its first request; a
// witness key is loaded until SIGCONT and then left idle, so that, once
// its leases have ended, the owner's count of it can be compared with
// what its client received. Every response is recorded (time, node,
// status, the rate-limit headers) in DIR/run.json, and judged:
// admitted per window against min(L, offered) and a reference store,
// runs of 429s, each Retry-After and Remaining against what the client
// saw next, and the owner's count after the stall against the 200s
// received (analyze.go, promise.go). The tables go to DIR/results.md and,
// with -doc, between <!-- stall:begin --> and <!-- stall:end --> there.
//
// It refuses node URLs that are not loopback addresses, and PIDs whose
// process is not the node binary.
//
// It is not part of the product.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tierlimit/tierlimit/bench/mdsection"
	"github.com/tierlimit/tierlimit/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stall:", err)
		os.Exit(1)
	}
}

// options are the command line's.
type options struct {
	nodes, pids, owner, tiers, token, variants string
	out, doc, from, commit, command, mode      string
	plan                                       Plan
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("stall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.nodes, "nodes", "", "the nodes' HTTP base URLs, comma-separated (loopback only)")
	fs.StringVar(&o.pids, "pids", "", "the nodes' process ids, in the order of -nodes")
	fs.StringVar(&o.owner, "owner", "", "name of the node to stop, whose keys are loaded (default: the second node's)")
	fs.StringVar(&o.tiers, "tiers", "", "the tiers file the nodes run with; keys are picked from it")
	fs.StringVar(&o.token, "admin-token", "", "the nodes' admin token, for /system/cluster")
	fs.StringVar(&o.variants, "variants", "others,all", "where requests go: others (the two other nodes), all (all three)")
	fs.Float64Var(&o.plan.Rate, "rate", 13, "requests a second per key")
	fs.DurationVar(&o.plan.Warmup, "warmup", 5*time.Second, "load before the owner is stopped")
	fs.DurationVar(&o.plan.Stall, "stall", 4*time.Second, "how long the owner stays stopped")
	fs.IntVar(&o.plan.Windows, "windows", 2, "windows each key is loaded for, from its first request")
	fs.DurationVar(&o.plan.Timeout, "timeout", 3*time.Second, "client timeout per request")
	fs.DurationVar(&o.plan.ProbeAfter, "probe-after", time.Second, "after SIGCONT, a key's next request goes to the owner")
	fs.DurationVar(&o.plan.WitnessProbeAfter, "witness-probe-after", 2500*time.Millisecond, "after SIGCONT, the idle witness keys are probed at the owner")
	fs.StringVar(&o.out, "out", "", "directory for run.json and results.md")
	fs.StringVar(&o.doc, "doc", "", "markdown file whose stall section to replace (optional)")
	fs.StringVar(&o.from, "from", "", "a run.json to report on again, instead of running")
	fs.StringVar(&o.commit, "commit", "unknown", "the code measured, for the report")
	fs.StringVar(&o.command, "command", "", "the command that ran it, for the report")
	fs.StringVar(&o.mode, "mode", "full", "full or quick, for the report")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.out == "" {
		return o, errors.New("-out is required")
	}
	if o.from != "" {
		return o, nil
	}
	p := o.plan
	switch {
	case o.nodes == "" || o.pids == "" || o.tiers == "" || o.token == "":
		return o, errors.New("-nodes, -pids, -tiers and -admin-token are required")
	case p.Rate <= 0 || p.Rate > 200:
		return o, fmt.Errorf("-rate %v: want more than 0, at most 200", p.Rate)
	case p.Warmup < time.Second || p.Stall <= 0 || p.Windows < 1 || p.Windows > 3 || p.Timeout <= 0:
		return o, errors.New("want -warmup ≥ 1s, -stall > 0, -windows 1 to 3, -timeout > 0")
	case p.ProbeAfter < 0 || p.WitnessProbeAfter < 0:
		return o, errors.New("-probe-after and -witness-probe-after must not be negative")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	var r Capture
	if o.from != "" {
		b, err := os.ReadFile(o.from)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", o.from, err)
		}
	} else {
		if r, err = measure(ctx, o, stderr); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if o.from == "" {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.out, "run.json"), b, 0o644); err != nil {
			return err
		}
	}
	md := render(r, analyze(r))
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if o.doc == "" {
		return nil
	}
	old, err := os.ReadFile(o.doc)
	if err != nil {
		return err
	}
	updated, err := mdsection.Replace(old, beginMarker, endMarker, md)
	if err != nil {
		return fmt.Errorf("%s: %w", o.doc, err)
	}
	return os.WriteFile(o.doc, updated, 0o644)
}

// measure runs the scenario against the nodes and returns what it saw.
func measure(ctx context.Context, o options, stderr io.Writer) (Capture, error) {
	r := Capture{Commit: o.commit, Command: o.command, Mode: o.mode, Date: time.Now(), Plan: o.plan, Machine: machine()}
	urls, pids := strings.Split(o.nodes, ","), strings.Split(o.pids, ",")
	if len(urls) != 3 || len(pids) != 3 {
		return r, fmt.Errorf("want 3 nodes and 3 pids, have %d and %d", len(urls), len(pids))
	}
	for i, u := range urls {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if err := loopbackURL(u); err != nil {
			return r, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(pids[i]))
		if err != nil || pid <= 1 {
			return r, fmt.Errorf("-pids: %q is not a process id", pids[i])
		}
		if err := processOf(pid, "node"); err != nil {
			return r, err
		}
		r.Nodes = append(r.Nodes, Node{URL: u, PID: pid})
	}
	a := admin{client: &http.Client{Timeout: 2 * time.Second}, token: o.token}
	if err := nameNodes(ctx, a, r.Nodes); err != nil {
		return r, err
	}
	names := make([]string, len(r.Nodes))
	byName := map[string]Node{}
	for i, n := range r.Nodes {
		names[i] = n.Name
		byName[n.Name] = n
	}
	r.Owner = o.owner
	if r.Owner == "" {
		r.Owner = names[1]
	}
	owner, ok := byName[r.Owner]
	if !ok {
		return r, fmt.Errorf("-owner %s: no such node; have %s", r.Owner, strings.Join(names, ", "))
	}

	tiers, err := config.Load(o.tiers)
	if err != nil {
		return r, err
	}
	r.Window = tiers.Window
	keys, err := readKeys(o.tiers)
	if err != nil {
		return r, err
	}
	variants := strings.Split(o.variants, ",")
	for vi, v := range variants {
		targets := names
		switch v {
		case "all":
		case "others":
			targets = nil
			for _, n := range names {
				if n != r.Owner {
					targets = append(targets, n)
				}
			}
		default:
			return r, fmt.Errorf("-variants: %q is not others or all", v)
		}
		for _, tier := range []string{"pro", "enterprise"} {
			t, ok := tiers.Tier(tier)
			if !ok {
				return r, fmt.Errorf("%s has no tier %s", o.tiers, tier)
			}
			ks, err := pickKeys(keys, tier, names, r.Owner, 2*len(variants))
			if err != nil {
				return r, err
			}
			r.Keys = append(r.Keys,
				Key{Variant: v, Role: tier, Tier: tier, APIKey: ks[2*vi], Limit: t.Burst, Targets: targets},
				Key{Variant: v, Role: tier + " witness", Tier: tier, APIKey: ks[2*vi+1], Limit: t.Burst, Witness: true, Targets: targets})
		}
	}

	p := o.plan
	s := &session{
		plan: p, window: r.Window, nodes: byName, owner: owner, keys: r.Keys,
		client: &http.Client{Timeout: p.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	s.t0 = time.Now().Add(200 * time.Millisecond)
	s.stop = s.t0.Add(p.Warmup)
	s.cont = s.stop.Add(p.Stall)
	s.probeAt = s.cont.Add(p.ProbeAfter)
	r.T0, r.Stop, r.Cont = s.t0, s.stop, s.cont
	total := time.Duration(p.Windows)*r.Window + p.Timeout + 30*time.Second
	ctx, cancel := context.WithDeadline(ctx, s.t0.Add(total))
	defer cancel()
	fmt.Fprintf(stderr, "stall: owner %s (pid %d); %d keys at %.0f/s; SIGSTOP at +%s for %s; about %s in all\n",
		owner.Name, owner.PID, len(r.Keys), p.Rate, p.Warmup, p.Stall, time.Duration(p.Windows)*r.Window)

	var (
		wg     sync.WaitGroup
		errMu  sync.Mutex
		runErr error
	)
	fail := func(err error) {
		errMu.Lock()
		runErr = errors.Join(runErr, err)
		errMu.Unlock()
		cancel()
	}
	for i, k := range r.Keys {
		wg.Go(func() { s.drive(ctx, k, i) })
	}
	wg.Go(func() {
		if !sleepUntil(ctx, s.t0.Add(1500*time.Millisecond)) {
			return
		}
		if err := checkOwnership(ctx, a, r.Nodes, owner.Name, len(r.Keys)); err != nil {
			fail(err)
		}
	})
	var observer Node
	for _, n := range r.Nodes {
		if n.Name != owner.Name {
			observer = n
			break
		}
	}
	wg.Go(func() {
		if !sleepUntil(ctx, s.stop.Add(-500*time.Millisecond)) {
			return
		}
		wctx, wcancel := context.WithDeadline(ctx, s.cont.Add(afterSpan))
		defer wcancel()
		r.Watch = watchMember(wctx, a, observer, owner.Name)
	})
	wg.Go(func() {
		before := map[string]float64{}
		if sleepUntil(ctx, s.stop.Add(-100*time.Millisecond)) {
			for _, n := range r.Nodes {
				before[n.Name], _ = a.metric(ctx, n.URL, "tierlimit_local_fallbacks_total")
			}
		}
		if err := s.stallOwner(ctx); err != nil {
			fail(err)
			return
		}
		fmt.Fprintf(stderr, "stall: SIGCONT %s at +%s\n", owner.Name, time.Since(s.t0).Round(time.Millisecond))
		if !sleepUntil(ctx, s.cont.Add(afterSpan)) {
			return
		}
		r.Fallbacks = map[string]float64{}
		for _, n := range r.Nodes {
			v, err := a.metric(ctx, n.URL, "tierlimit_local_fallbacks_total")
			if err == nil {
				r.Fallbacks[n.Name] = v - before[n.Name]
			}
		}
	})
	wg.Wait()
	if runErr != nil {
		return r, runErr
	}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("run cut short: %w", err)
	}
	r.Records = s.records()
	return r, nil
}

// readKeys returns the API keys of a tiers file, each with its tier's
// name. (config.Tiers answers lookups only.)
func readKeys(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		APIKeys map[string]string `json:"api_keys"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.APIKeys, nil
}

// machine describes the host for the report.
func machine() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d CPUs, Linux %s, %s", runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version())
}
