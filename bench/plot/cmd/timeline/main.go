// Command timeline records, second by second, what a cluster admits and
// refuses per tier while its health state goes NORMAL → DEGRADED → NORMAL.
//
//	timeline -targets http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
//	    -admin-token TOKEN -config tiers.json -out docs/img/timeline.json
//
// It sends GET /test open-loop at a fixed rate per tier (-rate, requests
// per second over the tier's -keys keys, taken in turn), each request to
// the next node in turn as a round-robin load balancer would, and at the
// start of each phase but the first POSTs its state to one node (the k-th
// POST to the k-th node), while it polls every node's GET /system/health.
// The record (package timeline) is a JSON file that cmd/plot draws. The
// keys must be fresh: counted by no node within the last window.
//
// Each request stands for a GPU job: it sends its tier's -estimate as
// Tierlimit-Cost, and GET /test?work=-work&cost=-cost, so that cmd/node
// holds it -work long and settles its reservation at -cost. The record
// counts, per second, the cost the admitted jobs were charged (in the
// tiers file's cost_unit) and which limit each 429 names in its body.
//
// The default load fits config/tiers-gpu.json (a 60 s window; per key,
// NORMAL then DEGRADED: free 20 and 2 requests, 600 and 60 audio-seconds,
// 2 and 1 jobs at once; pro 150 and 100, 9000 and 6000, 15 and 10;
// enterprise 1500 and 1000, 90000 and 60000, 150 and 100). Each free key
// gets 0.3 req/s, 18 a window, jobs of 15 audio-seconds (270 a window),
// within NORMAL's limits and far over DEGRADED's, so free requests go from
// all admitted to all refused and back; pro keys get 1.5 req/s (90 a
// window) of 40 (3600), enterprise keys 12 (720) of 60 (43200), within
// even their DEGRADED limits, so those tiers go on unchanged. Jobs of
// 100 ms hold at most about one slot per key at a time: the jobs-at-once
// limits do not bind.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

func main() { loadrun.Main("timeline", run) }

// options are the command's flags.
type options struct {
	targets     []string
	token       string
	configPath  string
	phases      []phaseSpec
	load        loadSpec
	work        time.Duration
	poll        time.Duration
	timeout     time.Duration
	maxInFlight int
	out         string
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("timeline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := loadrun.AddClusterFlags(fs, getenv)
	fs.StringVar(&o.configPath, "config", "config/tiers-gpu.json", "tiers file the nodes run with: limits and keys")
	phases := fs.String("phases", "NORMAL=20s,DEGRADED=20s,NORMAL=20s", "the states in order, each for a whole number of seconds; the first must be in force already")
	keys := fs.String("keys", "free=30,pro=10,enterprise=5", "keys per tier, taken in sorted order from -config")
	rate := fs.String("rate", "free=9,pro=15,enterprise=60", "requests per second per tier, over its keys")
	estimate := fs.String("estimate", "free=20,pro=50,enterprise=70", "each request's cost estimate per tier, sent as Tierlimit-Cost; a tier without one reserves its default_estimate; empty for none")
	cost := fs.String("cost", "free=15,pro=40,enterprise=60", "each request's actual cost per tier, sent as GET /test?cost= and settled when its job ends; a tier without one is charged its estimate; empty for none")
	fs.DurationVar(&o.work, "work", 100*time.Millisecond, "how long each admitted request's job runs (GET /test?work=), holding a concurrency slot; 0 for none")
	fs.DurationVar(&o.poll, "poll", 25*time.Millisecond, "how often every node's health state is polled")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "longest a request may take")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 512, "most requests in flight; one over it is not sent and counts as failed")
	fs.StringVar(&o.out, "out", "timeline.json", "file to write the record to; - for standard output")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := loadrun.NoArgs(fs); err != nil {
		return o, err
	}
	var err error
	if o.targets, o.token, err = cluster.Parse("the run sets the health state"); err != nil {
		return o, err
	}
	if o.poll <= 0 || o.timeout <= 0 || o.maxInFlight < 1 {
		return o, fmt.Errorf("-poll, -timeout and -max-in-flight must be positive")
	}
	if err := loadrun.CheckWork(o.work, o.timeout); err != nil {
		return o, err
	}
	if o.phases, err = parsePhases(*phases); err != nil {
		return o, err
	}
	if o.load.keys, err = parsePerTier("-keys", *keys); err != nil {
		return o, err
	}
	if o.load.rate, err = parsePerTier("-rate", *rate); err != nil {
		return o, err
	}
	if *estimate != "" {
		if o.load.estimate, err = parsePerTier("-estimate", *estimate); err != nil {
			return o, err
		}
	}
	if *cost != "" {
		if o.load.cost, err = parsePerTier("-cost", *cost); err != nil {
			return o, err
		}
	}
	return o, nil
}

// run is the command: it parses args, runs the timeline and writes it.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if o.out != "-" {
		// Fail now rather than after the run.
		if _, err := os.Stat(filepath.Dir(o.out)); err != nil {
			return fmt.Errorf("-out %s: %w", o.out, err)
		}
	}
	tiers, loads, err := loadTiers(o.configPath, o.load)
	if err != nil {
		return err
	}
	for _, l := range loads {
		fmt.Fprintln(stderr, "load", fit(l, tiers.Window, o.work, tiers.CostUnit))
	}
	transport := &http.Transport{MaxIdleConnsPerHost: o.maxInFlight, IdleConnTimeout: time.Minute}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: o.timeout}
	ad := loadrun.Admin{Client: client, Token: o.token}

	// The first phase's state must be in force everywhere already.
	for _, t := range o.targets {
		h, err := ad.Health(ctx, t)
		if err != nil {
			return err
		}
		if got := h.Status.String(); got != o.phases[0].status {
			return fmt.Errorf("%s (%s) is %s, the first phase wants %s: POST %s first", t, h.Node, got, o.phases[0].status, o.phases[0].status)
		}
	}

	rec, err := record(ctx, o, loads, ad, client, stderr)
	if rec != nil {
		rec.WindowSeconds = int(tiers.Window / time.Second)
		rec.CostUnit = tiers.CostUnit
		if werr := write(o.out, rec); werr != nil {
			return errors.Join(err, werr)
		}
		if err == nil {
			fmt.Fprintf(stderr, "wrote %s\n", o.out)
			_ = timeline.Summarize(rec).WriteText(stderr)
		}
	}
	return err
}

// record runs the load and the phases and returns what it saw. If ctx ends
// early it puts the first phase's state back and returns the record so far
// with ctx's error.
func record(ctx context.Context, o options, loads []tierLoad, ad loadrun.Admin, client *http.Client, stderr io.Writer) (*timeline.Record, error) {
	var total time.Duration
	for _, p := range o.phases {
		total += p.length
	}
	// A short lead, so the senders and pollers are ready at offset 0.
	start := time.Now().Add(200 * time.Millisecond)
	rec := &timeline.Record{Start: start, Targets: o.targets, Work: timeline.Offset(o.work)}
	count := timeline.NewCounter(recordTiers(loads), total)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchers := make([]*watcher, len(o.targets))
	var watching sync.WaitGroup
	for i, t := range o.targets {
		watchers[i] = &watcher{admin: ad, target: t, start: start, interval: o.poll}
		watching.Go(func() { watchers[i].run(watchCtx) })
	}

	l := &load{Senders: loadrun.NewSenders(o.targets, start, o.maxInFlight), client: client, count: count, work: o.work}
	var sending sync.WaitGroup
	for i, tl := range loads {
		// Tiers start a fraction of their interval apart, so that their
		// requests do not all leave at the same instant.
		phase := time.Duration(float64(time.Second) / tl.rate * float64(i) / float64(len(loads)))
		sending.Go(func() { l.run(ctx, tl, phase, total) })
	}

	// The phases: a POST at the start of each one whose state differs.
	var at time.Duration
	posts, current := 0, o.phases[0].status
	var runErr error
	for i, p := range o.phases {
		ph := timeline.Phase{Status: p.status, Start: timeline.Offset(at), End: timeline.Offset(at + p.length)}
		if i > 0 {
			if err := loadrun.SleepUntil(ctx, start.Add(at)); err != nil {
				runErr = err
				break
			}
			if p.status != current {
				target := o.targets[posts%len(o.targets)]
				post := postStatus(ctx, ad, target, p.status, start)
				posts++
				ph.Post = &post
				if post.Error != "" {
					fmt.Fprintf(stderr, "POST %s to %s failed: %s\n", p.status, target, post.Error)
				} else {
					current = p.status
					fmt.Fprintf(stderr, "%5.1f s  POST %s to %s (%s): %.1f ms\n", ph.Start.Seconds(), p.status, target, post.Node,
						float64(post.Answered-post.Sent)/float64(time.Millisecond))
				}
			}
		}
		rec.Phases = append(rec.Phases, ph)
		at += p.length
	}
	if runErr == nil {
		runErr = loadrun.SleepUntil(ctx, start.Add(total))
	}
	sending.Wait()
	l.Wait()

	if runErr != nil && current != o.phases[0].status {
		// Interrupted: leave the cluster as it was found.
		restoreCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if _, err := ad.SetStatus(restoreCtx, o.targets[0], o.phases[0].status); err != nil {
			fmt.Fprintf(stderr, "could not put %s back: %v\n", o.phases[0].status, err)
		}
		cancel()
	}
	if runErr == nil {
		// Poll on until every node reports the last state, for at most 5 s.
		deadline := time.Now().Add(5 * time.Second)
		for !allReport(watchers, current) && time.Now().Before(deadline) {
			if err := loadrun.SleepUntil(ctx, time.Now().Add(o.poll)); err != nil {
				runErr = err
				break
			}
		}
	}
	stopWatch()
	watching.Wait()

	rec.Tiers = count.Tiers()
	rec.Seconds = count.Seconds()
	rec.SendLagMax = timeline.Offset(l.LagMax())
	rec.SentLate = l.Late()
	for _, w := range watchers {
		rec.Nodes = append(rec.Nodes, w.record())
	}
	return rec, runErr
}

// allReport reports whether every watcher last saw status.
func allReport(ws []*watcher, status string) bool {
	for _, w := range ws {
		if w.status() != status {
			return false
		}
	}
	return true
}

// write writes rec to path, or to standard output for "-".
func write(path string, rec *timeline.Record) error {
	var b bytes.Buffer
	if err := timeline.Write(&b, rec); err != nil {
		return err
	}
	if path == "-" {
		_, err := os.Stdout.Write(b.Bytes())
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
