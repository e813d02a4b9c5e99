// Command plot draws the pictures in docs/img from the JSON files beside
// them, and makes those files from real runs.
//
//	plot timeline -in docs/img/timeline.json -out docs/img/timeline.svg
//	plot latency-data -runs bench/out/run/runs.tsv -out docs/img/latency.json
//	plot latency -in docs/img/latency.json -out docs/img/latency.svg
//	plot auto-data -in manual.json,auto.json -out docs/img/auto.json
//	plot auto -in docs/img/auto.json -out docs/img/auto.svg
//
// timeline draws a record of cmd/timeline. latency-data takes, from the
// runs.tsv of a bench/run.sh and the loadgen reports it lists, the latency
// distribution of every load run; latency draws them, one line per design.
// auto-data joins the records of cmd/surge runs into one file, auto draws
// it, a column per run, and both print the runs' figures.
// An -out ending in .png writes a PNG instead, to look at.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/tierlimit/tierlimit/bench/plot/chart"
	"github.com/tierlimit/tierlimit/bench/plot/latency"
	"github.com/tierlimit/tierlimit/bench/plot/surge"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  plot timeline -in TIMELINE.json -out FILE.svg
  plot latency-data -runs RUNS.tsv -out LATENCY.json
  plot latency -in LATENCY.json -out FILE.svg [-load enterprise] [-c 1,64]
  plot auto-data -in RUN.json,RUN.json -out AUTO.json
  plot auto -in AUTO.json -out FILE.svg`

// run is the command: args are the subcommand and its flags.
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("no subcommand")
	}
	fs := flag.NewFlagSet("plot "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file to write; for a picture, its extension (.svg or .png) says which")
	switch args[0] {
	case "timeline":
		in := fs.String("in", "docs/img/timeline.json", "record of cmd/timeline to draw")
		if err := parse(fs, args[1:], in, out); err != nil {
			return err
		}
		rec, err := timeline.ReadFile(*in)
		if err != nil {
			return err
		}
		if err := chart.Save(*out, chart.Timeline(rec)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", *out)
		return timeline.Summarize(rec).WriteText(stdout)
	case "latency-data":
		runs := fs.String("runs", "bench/out/run/runs.tsv", "runs.tsv of a bench/run.sh")
		if err := parse(fs, args[1:], runs, out); err != nil {
			return err
		}
		d, err := latency.FromRuns(*runs)
		if err != nil {
			return err
		}
		if err := latency.WriteFile(*out, d); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s: %d load runs\n", *out, len(d.Series))
		return nil
	case "latency":
		in := fs.String("in", "docs/img/latency.json", "latency data (plot latency-data) to draw")
		load := fs.String("load", latency.LoadEnterprise, "the load whose runs to draw: enterprise or mixed")
		cs := fs.String("c", "1,64", "the concurrencies to draw, one panel each")
		if err := parse(fs, args[1:], in, out); err != nil {
			return err
		}
		var conc []int
		for s := range strings.SplitSeq(*cs, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || c < 1 {
				return fmt.Errorf("-c %q: want positive whole numbers", *cs)
			}
			conc = append(conc, c)
		}
		d, err := latency.ReadFile(*in)
		if err != nil {
			return err
		}
		f, err := chart.Latency(d, *load, conc)
		if err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		if err := chart.Save(*out, f); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", *out)
		return nil
	case "auto-data":
		in := fs.String("in", "", "comma-separated records of cmd/surge runs, in the order to draw them")
		if err := parse(fs, args[1:], in, out); err != nil {
			return err
		}
		f, err := joinRuns(strings.Split(*in, ","))
		if err != nil {
			return err
		}
		if err := surge.WriteFile(*out, f); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s: %d runs\n", *out, len(f.Runs))
		return f.WriteText(stdout)
	case "auto":
		in := fs.String("in", "docs/img/auto.json", "runs of cmd/surge (plot auto-data) to draw")
		if err := parse(fs, args[1:], in, out); err != nil {
			return err
		}
		f, err := surge.ReadFile(*in)
		if err != nil {
			return err
		}
		if err := chart.Save(*out, chart.Auto(f)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", *out)
		return f.WriteText(stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}

// parse parses args into fs and checks that the two named files are set.
func parse(fs *flag.FlagSet, args []string, in, out *string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *in == "" || *out == "" {
		return fmt.Errorf("%s: give both the input (-in or -runs) and -out", fs.Name())
	}
	return nil
}

// joinRuns returns the runs of the files at paths in one File, in order:
// their commit if they agree, else each run's, joined by " / ".
func joinRuns(paths []string) (*surge.File, error) {
	out := &surge.File{}
	var commits []string
	for _, p := range paths {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		f, err := surge.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for range f.Runs {
			commits = append(commits, f.Commit)
		}
		out.Runs = append(out.Runs, f.Runs...)
	}
	if len(commits) > 0 {
		out.Commit = commits[0]
		for _, c := range commits[1:] {
			if c != commits[0] {
				out.Commit = strings.Join(commits, " / ")
				break
			}
		}
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}
