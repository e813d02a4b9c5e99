// Command loadgen is the load tool of tierlimit. It sends GET /test (or
// another -method and -path, with an empty body) with an X-API-Key to one
// or more nodes (round-robin over -targets, or over every address of a -dns
// name, re-resolved as it changes) from -c workers, for -d or -n requests,
// at most -rate per second, with keys of the tiers in -mix, and reports
// throughput, latency quantiles, counts by status, the spread over targets
// and tiers, and, for -accuracy-keys fresh keys per tier, whether each key
// was admitted as often as its limit allows: no more, no less. -gen-config writes a tiers file with fresh keys for the nodes and
// loadgen to share. `loadgen -h` explains the flags and the accuracy rules.
// With -json the report is one loadreport.Report (package bench/loadreport),
// which bench/report reads.
//
// The core is pure and tested on its own: the plan (which key and target
// the i-th request gets), the stats and histogram, the accuracy rules, the
// report and the tiers file. The shell around it (workers, HTTP, DNS,
// progress) is thin.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		if _, ok := errors.AsType[*usageError](err); ok {
			fmt.Fprintln(os.Stderr, "run loadgen -h for help")
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errFailed is returned by run when the run completed and its report is
// printed, but a -fail-on-5xx or -max-over-admission check failed.
var errFailed = errors.New("checks failed")

// errInterrupted is returned by run when ctx ended the run early; the
// report of what ran is printed.
var errInterrupted = errors.New("interrupted")

// run runs loadgen with the command line args: the report goes to stdout,
// progress, warnings and DNS changes to stderr. It returns flag.ErrHelp
// after printing the usage for -h, a *usageError for a bad command line,
// errFailed or errInterrupted after printing the report of a run that
// failed a check or was cut short by ctx.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadTiersFile(o.configPath)
	if err != nil {
		return err
	}
	if o.genConfig != "" {
		return generate(o, cfg, stdout)
	}
	keys := cfg
	if o.keysFile != "" {
		if keys, err = loadTiersFile(o.keysFile); err != nil {
			return err
		}
	}
	p, err := newPlan(cfg, keys, o.mix, o.keys, o.accuracyKeys)
	if err != nil {
		return err
	}

	var targets *targetSet
	if o.dns != "" {
		w, err := startDNS(ctx, net.DefaultResolver, o.dns, o.dnsInterval, stderr)
		if err != nil {
			return err
		}
		defer w.Close()
		targets = w.set
	} else {
		targets = newStaticTargets(o.targets)
	}
	initial := targets.current()

	var progress io.Writer
	if !o.quiet {
		progress = stderr
		fmt.Fprintf(stderr, "loadgen: %s to %s, %d workers, tiers %s\n",
			describeBound(o), strings.Join(initial, ","), o.concurrency, strings.Join(p.tierNames(), ","))
	}
	s, elapsed := newLoader(o, p, targets).run(ctx, progress)

	rep := newReport(p, s, elapsed, initial, o.concurrency)
	rep.Interrupted = ctx.Err() != nil
	rep.Failures = append(rep.Failures, failures(rep, o.failOn5xx, o.maxOver)...)
	if o.json {
		for _, m := range warnings(rep) {
			fmt.Fprintln(stderr, "loadgen: warning:", m)
		}
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	} else if err := writeText(stdout, rep); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	switch {
	case rep.Interrupted:
		return errInterrupted
	case len(rep.Failures) > 0:
		return fmt.Errorf("%w: %s", errFailed, strings.Join(rep.Failures, "; "))
	}
	return nil
}

// describeBound says what ends the run, for the first progress line.
func describeBound(o options) string {
	var parts []string
	if o.requests > 0 {
		parts = append(parts, fmt.Sprintf("%d requests", o.requests))
	}
	if o.duration > 0 {
		parts = append(parts, o.duration.String())
	}
	s := strings.Join(parts, " or ")
	if o.rate > 0 {
		s += fmt.Sprintf(" at %g req/s", o.rate)
	}
	return s
}

// generate writes the -gen-config file and tells on stdout where and with
// which run id, as text or, with -json, as a JSON object.
func generate(o options, cfg tiersFile, stdout io.Writer) error {
	runID := newRunID()
	data, err := genConfig(cfg, o.genKeys, runID)
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.genConfig, data, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	tiers := cfg.tierNames()
	if o.json {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"config": o.genConfig, "run_id": runID, "keys_per_tier": o.genKeys, "tiers": tiers,
		})
	}
	_, err = fmt.Fprintf(stdout, "wrote %s: %d new keys per tier (%s), named %s to %s\n",
		o.genConfig, o.genKeys, strings.Join(tiers, ", "),
		generatedKey("<tier>", runID, 1), generatedKey("<tier>", runID, o.genKeys))
	return err
}
