// Command report is bench/run.sh's helper. It has two subcommands:
//
//	report keys -config big.json -state keys.state -take enterprise=1000 -out run.json
//
// writes a tiers file holding the next unused keys of each named tier from
// big.json (the keys loadgen -gen-config wrote, in order), for loadgen's
// -keys-file, and records in -state which keys are used, so every run gets
// fresh keys.
//
//	report table -runs runs.tsv -meta meta.txt -out results.md -readme README.md
//
// reads the loadgen -json reports listed in runs.tsv, writes the results
// table as markdown to -out, and replaces the part of -readme between
// <!-- bench:begin --> and <!-- bench:end --> with it (appending the
// section if the markers are missing).
//
// It is not part of the product.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: keys or table")
	}
	fs := flag.NewFlagSet("report "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "keys":
		configPath := fs.String("config", "", "tiers file with the keys loadgen -gen-config wrote")
		state := fs.String("state", "", "file recording how many keys of each tier are used")
		take := fs.String("take", "", "keys to take, per tier: enterprise=1000,free=5")
		out := fs.String("out", "", "tiers file to write, for loadgen -keys-file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *configPath == "" || *state == "" || *take == "" || *out == "" {
			return errors.New("keys: -config, -state, -take and -out are required")
		}
		return takeKeys(*configPath, *state, *take, *out)
	case "table":
		runs := fs.String("runs", "", "runs.tsv written by bench/run.sh")
		meta := fs.String("meta", "", "key=value lines about the machine and the run")
		out := fs.String("out", "", "markdown file to write the results to")
		readme := fs.String("readme", "", "README whose bench section to replace (optional)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *runs == "" || *meta == "" || *out == "" {
			return errors.New("table: -runs, -meta and -out are required")
		}
		return writeTable(*runs, *meta, *out, *readme)
	}
	return fmt.Errorf("unknown subcommand %q: want keys or table", args[0])
}
