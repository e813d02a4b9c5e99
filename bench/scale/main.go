// Command scale is bench/scale.sh's helper: it measures a cluster of
// cmd/node processes that the script started, and writes the results table.
// The script owns the processes (it starts them, kills them and stops them);
// this program only reads their logs, scrapes their metrics and posts to
// their admin endpoint.
//
// The nodes file (-nodes) has one line per node: its name, its base URL and
// the path of its log (its stderr, JSON lines), separated by tabs.
//
//	scale members -nodes nodes.tsv -since MS [-gone a,b] [-left a] [-exit a] -timeout 60s -out f.json
//
// waits until every node not in -gone logs "members changed" with exactly
// the nodes not in -gone, after -since (Unix milliseconds); with -left also
// until each logs "peer left" (or "peer failed") for that node, and with
// -exit until that node logs "node stopped". It writes the time each took from -since.
//
//	scale health -nodes nodes.tsv -token T -writes 6 -timeout 20s -out f.json
//
// posts DEGRADED and NORMAL in turn, each to another node, and after each
// write waits until every other node logs that it adopted that version.
//
//	scale snap -nodes nodes.tsv [-procs loadgen=PID] -out f.json
//
// scrapes every node's /metrics (the series the table needs) and reads the
// machine's CPU and UDP counters, and the CPU time of -procs; without
// -nodes, only the latter.
//
//	scale events -nodes nodes.tsv -killed a -out f.json
//
// counts what the logs say went wrong: failures of peers nobody killed,
// warnings and errors, panics.
//
//	scale ring -n 10,30,60 -out f.json
//
// times ring.Ring.Set at each size, as BenchmarkRingSet does.
//
//	scale quiet -max 15 -wait 60s
//
// waits until the machine's CPUs are at most -max percent busy (other
// programs leaving), for at most -wait.
//
//	scale others -a a.json -b b.json
//
// prints the percentage of the machine that programs other than the nodes
// and the snapshots' -procs took between two snapshots.
//
//	scale table -dir run -ns "10 30 60" -meta meta.txt -out results.md -doc docs/scale.md
//
// renders the results of every N as one markdown table, writes it to -out
// and, with -doc, between the doc's scale markers. It exits 1 if the run
// shows a problem (a wait that timed out, errors under load, a node that
// died), after writing.
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
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// errProblems is returned by the table command when the run it rendered
// shows a problem; the table is written all the same.
var errProblems = errors.New("the run shows problems (listed under the table)")

// run runs the subcommand in args[0] with the flags after it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: members, health, snap, events, ring, quiet, others or table")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "members":
		return runMembers(ctx, rest, stderr)
	case "health":
		return runHealth(ctx, rest, stderr)
	case "snap":
		return runSnap(ctx, rest, stderr)
	case "events":
		return runEvents(rest, stderr)
	case "ring":
		return runRing(rest, stderr)
	case "quiet":
		return runQuiet(ctx, rest, stderr)
	case "others":
		return runOthers(rest, stdout, stderr)
	case "table":
		return runTable(rest, stdout, stderr)
	default:
		return fmt.Errorf("unknown subcommand %q: want members, health, snap, events, ring, quiet, others or table", sub)
	}
}

// writeJSON writes v to path as indented JSON.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readJSON reads path into v.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
