package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"io"
	"regexp"
	"slices"
	"strings"
)

// events is what the logs of one cluster say went wrong, or looked odd.
type events struct {
	// FalseFailures counts "peer failed" lines about peers nobody killed:
	// live members declared dead (a probe that timed out on busy CPUs).
	FalseFailures int `json:"false_failures"`
	// FalselyFailed names those peers.
	FalselyFailed []string `json:"falsely_failed,omitempty"`
	// JoinRetries counts "join failed; retrying" lines: a seed that did not
	// answer a join.
	JoinRetries int `json:"join_retries"`
	// Warnings lists the warning and error messages, by count, most first.
	Warnings []msgCount `json:"warnings,omitempty"`
	// Crashes counts panics, fatal errors and data races.
	Crashes int `json:"crashes"`
}

// msgCount is a log message and how many lines had it.
type msgCount struct {
	Msg   string `json:"msg"`
	Count int    `json:"count"`
}

// addrPattern matches the host:port addresses in log messages.
var addrPattern = regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}:\d+\b`)

// namesPattern matches any of names as a whole word, or nothing for none.
func namesPattern(names []string) *regexp.Regexp {
	if len(names) == 0 {
		return regexp.MustCompile(`$^`)
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return regexp.MustCompile(`\b(` + strings.Join(quoted, "|") + `)\b`)
}

// kindOf returns msg with addresses and the node names names matches
// replaced by <addr> and <node>, so that one kind of message counts once
// whichever peer it names.
func kindOf(msg string, names *regexp.Regexp) string {
	msg = addrPattern.ReplaceAllString(msg, "<addr>")
	return names.ReplaceAllString(msg, "<node>")
}

// tally reads one node's log lines into e. killed are the nodes the run
// killed or stopped on purpose; names matches every node's name, which
// warn counts messages without.
func (e *events) tally(lines [][]byte, killed []string, names *regexp.Regexp, warn map[string]int) {
	for _, b := range lines {
		if bytes.HasPrefix(b, []byte("panic:")) || bytes.HasPrefix(b, []byte("fatal error:")) || bytes.Contains(b, []byte("DATA RACE")) {
			e.Crashes++
			continue
		}
		l, ok := parseLogLine(b)
		if !ok {
			continue
		}
		switch {
		case l.Msg == msgPeerFailed && !slices.Contains(killed, l.Peer):
			e.FalseFailures++
			if !slices.Contains(e.FalselyFailed, l.Peer) {
				e.FalselyFailed = append(e.FalselyFailed, l.Peer)
			}
		case l.Msg == msgJoinFailed:
			e.JoinRetries++
		}
		if l.Level == "WARN" || l.Level == "ERROR" {
			warn[l.Level+": "+kindOf(l.Msg, names)]++
		}
	}
}

// sortWarnings turns counts by message into e.Warnings, most first.
func (e *events) sortWarnings(warn map[string]int) {
	e.Warnings = e.Warnings[:0]
	for m, n := range warn {
		e.Warnings = append(e.Warnings, msgCount{Msg: m, Count: n})
	}
	slices.SortFunc(e.Warnings, func(a, b msgCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Msg, b.Msg))
	})
	slices.Sort(e.FalselyFailed)
}

func runEvents(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodesPath := fs.String("nodes", "", "nodes file")
	killed := fs.String("killed", "", "comma-separated nodes the run killed or stopped on purpose")
	out := fs.String("out", "", "JSON file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodesPath == "" || *out == "" {
		return errors.New("events: -nodes and -out are required")
	}
	nodes, err := readNodes(*nodesPath)
	if err != nil {
		return err
	}
	var e events
	warn := map[string]int{}
	k := splitNames(*killed)
	var all []string
	for _, n := range nodes {
		all = append(all, n.Name)
	}
	names := namesPattern(all)
	for _, n := range nodes {
		lines, err := (&tail{path: n.Log}).lines()
		if err != nil {
			return err
		}
		e.tally(lines, k, names, warn)
	}
	e.sortWarnings(warn)
	return writeJSON(*out, e)
}
