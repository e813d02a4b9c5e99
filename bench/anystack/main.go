// Command anystack is bench/anystack.sh's report writer. It reads what the
// script measured (the loadgen -json reports listed in runs.tsv, the upload
// timings and the proxy's memory in upload.tsv, the run's facts in
// meta.txt, and the profiles' top entries in a directory) and writes the
// results as markdown: the tables, and each target met or missed.
//
//	anystack -runs runs.tsv -upload upload.tsv -meta meta.txt -profiles dir -out results.md [-doc docs/anystack.md]
//
// With -doc it also replaces the part of that file between
// <!-- anystack:begin --> and <!-- anystack:end --> with the results.
//
// It runs the smoke checks too (smoke.go): when one fails it still writes
// -out, but not -doc, and exits 1 naming the runs that failed.
//
// It is not part of the product.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tierlimit/tierlimit/bench/mdsection"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "anystack:", err)
		os.Exit(1)
	}
}

// run parses the command line, reads the inputs and writes the results.
func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("anystack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.String("runs", "", "runs.tsv written by bench/anystack.sh")
	uploads := fs.String("upload", "", "upload.tsv written by bench/anystack.sh (optional)")
	meta := fs.String("meta", "", "key=value lines about the machine and the run")
	profiles := fs.String("profiles", "", "directory of the profiles' top entries (optional)")
	out := fs.String("out", "", "markdown file to write the results to")
	doc := fs.String("doc", "", "markdown file whose anystack section to replace (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *runs == "" || *meta == "" || *out == "" {
		return errors.New("-runs, -meta and -out are required")
	}
	in, err := readInputs(*runs, *uploads, *meta, *profiles)
	if err != nil {
		return err
	}
	md := render(in)
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if problems := smoke(in); len(problems) > 0 {
		return fmt.Errorf("smoke checks failed (results in %s):\n  %s", *out, strings.Join(problems, "\n  "))
	}
	if *doc == "" {
		return nil
	}
	old, err := os.ReadFile(*doc)
	if err != nil {
		return fmt.Errorf("read doc: %w", err)
	}
	updated, err := mdsection.Replace(old, beginMarker, endMarker, md)
	if err != nil {
		return fmt.Errorf("%s: %w", *doc, err)
	}
	if err := os.WriteFile(*doc, updated, 0o644); err != nil {
		return fmt.Errorf("write doc: %w", err)
	}
	return nil
}
