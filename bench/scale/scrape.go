package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Series the table reads from each node's /metrics.
var scraped = []string{
	"process_resident_memory_bytes",
	"process_cpu_seconds_total",
	"go_goroutines",
	"tierlimit_decision_duration_seconds_count",
	"tierlimit_decision_duration_seconds_sum",
	"tierlimit_local_fallbacks_total",
	"tierlimit_forward_errors_total",
	"tierlimit_cluster_members",
}

// sample is one value of a Prometheus series.
type sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

// parseMetrics reads the Prometheus text format from r and returns the
// samples of the series keep accepts. Comments, and lines it cannot read,
// are skipped.
func parseMetrics(r io.Reader, keep func(name string) bool) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, ok := parseSample(line)
		if ok && keep(s.Name) {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// parseSample reads one sample line: name, optional {labels}, value and an
// optional timestamp.
func parseSample(line string) (sample, bool) {
	var s sample
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, false
	}
	s.Name, line = line[:i], line[i:]
	if line[0] == '{' {
		labels, rest, ok := parseLabels(line[1:])
		if !ok {
			return s, false
		}
		s.Labels, line = labels, rest
	}
	fields := strings.Fields(line)
	if len(fields) < 1 || len(fields) > 2 {
		return s, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, false
	}
	s.Value = v
	return s, true
}

// parseLabels reads `a="x",b="y"}` and returns the labels and what follows
// the closing brace. Values may hold \\, \" and \n escapes.
func parseLabels(s string) (map[string]string, string, bool) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		if s == "" {
			return nil, "", false
		}
		if s[0] == '}' {
			return labels, s[1:], true
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return nil, "", false
		}
		name := strings.TrimSpace(s[:eq])
		s = s[eq+2:]
		var v strings.Builder
		closed := false
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(s[i])
				}
				continue
			}
			if c == '"' {
				s, closed = s[i+1:], true
				break
			}
			v.WriteByte(c)
		}
		if !closed {
			return nil, "", false
		}
		labels[name] = v.String()
	}
}

// sum adds up the samples called name whose labels include every pair in
// match (label, value, label, value, ...).
func sum(samples []sample, name string, match ...string) float64 {
	var t float64
next:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(match); i += 2 {
			if s.Labels[match[i]] != match[i+1] {
				continue next
			}
		}
		t += s.Value
	}
	return t
}

// snapshot is every node's scraped series at one moment, and the
// machine's counters.
type snapshot struct {
	Time time.Time `json:"time"`
	// Machine is nil where /proc/stat cannot be read (not Linux).
	Machine *machineCPU `json:"machine,omitempty"`
	// UDP is nil where /proc/net/snmp cannot be read.
	UDP *udpCounters `json:"udp,omitempty"`
	// Procs holds the CPU time, in clock ticks as in Machine, of other
	// processes of the run (loadgen, the floor), by name.
	Procs map[string]uint64   `json:"procs,omitempty"`
	Nodes map[string][]sample `json:"nodes"`
	// Errors holds the nodes whose scrape failed, with why.
	Errors map[string]string `json:"errors,omitempty"`
}

func runSnap(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale snap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodesPath := fs.String("nodes", "", "nodes file (default: none, only the machine's counters)")
	gone := fs.String("gone", "", "comma-separated nodes not to scrape")
	procs := fs.String("procs", "", "other processes whose CPU time to read: name=pid,...")
	out := fs.String("out", "", "JSON file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("snap: -out is required")
	}
	pids, err := parsePids(*procs)
	if err != nil {
		return fmt.Errorf("snap: -procs: %w", err)
	}
	var nodes []node
	if *nodesPath != "" {
		if nodes, err = readNodes(*nodesPath); err != nil {
			return err
		}
	}
	skip := splitNames(*gone)
	snap := snapshot{Nodes: map[string][]sample{}, Errors: map[string]string{}}
	client := &http.Client{Timeout: 5 * time.Second}
	var mu sync.Mutex // guards snap.Nodes and snap.Errors
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // a few at a time: the scrape must not be a load of its own
	for _, n := range nodes {
		if slices.Contains(skip, n.Name) {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := scrape(ctx, client, n.URL)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				snap.Errors[n.Name] = err.Error()
				return
			}
			snap.Nodes[n.Name] = s
		})
	}
	wg.Wait()
	snap.Time = time.Now()
	snap.Machine, snap.UDP = readMachine()
	for name, pid := range pids {
		if t, err := procTicks(pid); err == nil {
			if snap.Procs == nil {
				snap.Procs = map[string]uint64{}
			}
			snap.Procs[name] = t
		}
	}
	return writeJSON(*out, snap)
}

// scrape reads the series the table needs from one node's /metrics.
func scrape(ctx context.Context, client *http.Client, base string) ([]sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: status %d", base, resp.StatusCode)
	}
	return parseMetrics(resp.Body, func(name string) bool { return slices.Contains(scraped, name) })
}
