// Package latency gathers the latency distributions of the load runs of a
// bench/run.sh, one Series per run, from the runs.tsv it leaves and the
// loadgen reports (package loadreport) that file lists. Data is what
// docs/img/latency.json holds, so the latency picture can be redrawn
// without a run.
package latency

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tierlimit/tierlimit/bench/loadreport"
	"github.com/tierlimit/tierlimit/bench/plot/internal/jsonfile"
)

// Loads of bench/run.sh, as runs.tsv names them.
const (
	// LoadEnterprise is enterprise keys only, under their limit: every
	// request is a full check.
	LoadEnterprise = "enterprise"
	// LoadMixed is free, pro and enterprise keys; most free requests are
	// refusals.
	LoadMixed = "mixed"
)

// Designs of bench/run.sh, as runs.tsv names them.
const (
	DesignFloor     = "floor"
	DesignRedis     = "redis"
	DesignTierlimit = "tierlimit"
)

// Data is the latency distributions of one bench run.
type Data struct {
	// Meta is the run's meta.txt, key by key (date, machine, mode, …);
	// empty if it had none.
	Meta []MetaItem `json:"meta"`
	// Series holds one load run each, in runs.tsv's order.
	Series []Series `json:"series"`
}

// MetaItem is one key=value line of meta.txt.
type MetaItem struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// MetaValue returns the value of key in Meta, or "".
func (d *Data) MetaValue(key string) string {
	for _, m := range d.Meta {
		if m.Key == key {
			return m.Value
		}
	}
	return ""
}

// Series is the latency distribution of one load run.
type Series struct {
	Load string `json:"load"`
	// Design is floor, redis or tierlimit; Variant the node flags that set
	// a configuration apart, if any.
	Design      string `json:"design"`
	Variant     string `json:"variant,omitempty"`
	Nodes       int    `json:"nodes"`
	Concurrency int    `json:"concurrency"`
	// Count is the number of responses the latencies are over.
	Count             uint64  `json:"count"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	// Points are ascending by percentile, in microseconds.
	Points []loadreport.Quantile `json:"points"`
	// Quantiles reports whether Points are only the report's four
	// quantiles (p50, p90, p99, p99.9): a report without a distribution.
	Quantiles bool    `json:"quantiles_only,omitempty"`
	MaxMicros float64 `json:"max_us"`
}

// Tail returns the points of s that at least n responses lie above:
// p99.99 of 5,000 responses is one response's latency, not a percentile.
func (s Series) Tail(n int) []loadreport.Quantile {
	var out []loadreport.Quantile
	for _, q := range s.Points {
		if float64(s.Count)*(100-q.Percentile)/100 >= float64(n) {
			out = append(out, q)
		}
	}
	return out
}

// FromRuns reads the runs.tsv at path (lines of kind[:load],
// design[:variant], nodes, concurrency, report path, fallbacks, others,
// tab-separated, as bench/run.sh writes them) and the report of each load
// run, and meta.txt beside it if there is one. Accuracy runs are left out.
func FromRuns(path string) (*Data, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := &Data{Meta: []MetaItem{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 7 {
			return nil, fmt.Errorf("%s:%d: %d fields, want 7", path, line, len(f))
		}
		kind, load, _ := strings.Cut(f[0], ":")
		if kind != "load" {
			continue
		}
		s := Series{Load: cmp.Or(load, LoadEnterprise)}
		s.Design, s.Variant, _ = strings.Cut(f[1], ":")
		if s.Nodes, err = strconv.Atoi(f[2]); err != nil {
			return nil, fmt.Errorf("%s:%d: nodes: %w", path, line, err)
		}
		if s.Concurrency, err = strconv.Atoi(f[3]); err != nil {
			return nil, fmt.Errorf("%s:%d: concurrency: %w", path, line, err)
		}
		rep, err := loadreport.ReadFile(reportPath(path, f[4]))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		fill(&s, rep)
		if len(s.Points) == 0 {
			return nil, fmt.Errorf("%s:%d: %s: no latencies (no request got a response)", path, line, f[4])
		}
		d.Series = append(d.Series, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(d.Series) == 0 {
		return nil, fmt.Errorf("%s: no load runs", path)
	}
	if meta, err := os.ReadFile(filepath.Join(filepath.Dir(path), "meta.txt")); err == nil {
		d.Meta = parseMeta(meta)
	}
	return d, nil
}

// reportPath resolves a report path of runs.tsv: absolute as bench/run.sh
// writes them, or relative to the file, for a copied run.
func reportPath(runs, p string) string {
	if filepath.IsAbs(p) {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		// A run directory moved since: the report sits in results/.
		return filepath.Join(filepath.Dir(runs), "results", filepath.Base(p))
	}
	return filepath.Join(filepath.Dir(runs), p)
}

// fill sets s's figures from rep.
func fill(s *Series, rep *loadreport.Report) {
	l := rep.Latency
	s.Count = l.Count
	s.RequestsPerSecond = rep.RequestsPerSecond
	s.MaxMicros = l.Max
	if len(l.Distribution) > 0 {
		s.Points = slices.Clone(l.Distribution)
		slices.SortFunc(s.Points, func(a, b loadreport.Quantile) int { return cmp.Compare(a.Percentile, b.Percentile) })
		return
	}
	if l.Count == 0 {
		return
	}
	s.Quantiles = true
	s.Points = []loadreport.Quantile{{Percentile: 50, Value: l.P50}, {Percentile: 90, Value: l.P90},
		{Percentile: 99, Value: l.P99}, {Percentile: 99.9, Value: l.P999}}
}

// parseMeta reads key=value lines, keeping their order.
func parseMeta(b []byte) []MetaItem {
	out := []MetaItem{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) != "" {
			out = append(out, MetaItem{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v)})
		}
	}
	return out
}

// Validate reports the first problem of d: no series, a series without
// points, points not ascending or not positive.
func (d *Data) Validate() error {
	if len(d.Series) == 0 {
		return fmt.Errorf("latency data: no series")
	}
	for i, s := range d.Series {
		if len(s.Points) == 0 {
			return fmt.Errorf("latency data: series %d (%s %s c=%d): no points", i, s.Load, s.Design, s.Concurrency)
		}
		for j, q := range s.Points {
			if !(q.Percentile > 0 && q.Percentile < 100) || !(q.Value > 0) {
				return fmt.Errorf("latency data: series %d (%s %s c=%d): point %d (p%v = %v µs) out of range", i, s.Load, s.Design, s.Concurrency, j, q.Percentile, q.Value)
			}
			if j > 0 && q.Percentile <= s.Points[j-1].Percentile {
				return fmt.Errorf("latency data: series %d (%s %s c=%d): percentiles not ascending", i, s.Load, s.Design, s.Concurrency)
			}
		}
	}
	return nil
}

// Write writes d to w as indented JSON.
func Write(w io.Writer, d *Data) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("write latency data: %w", err)
	}
	return nil
}

// WriteFile writes d to path.
func WriteFile(path string, d *Data) error {
	var b bytes.Buffer
	if err := Write(&b, d); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Read decodes Data from r and validates it.
func Read(r io.Reader) (*Data, error) {
	var d Data
	if err := json.NewDecoder(r).Decode(&d); err != nil {
		return nil, fmt.Errorf("read latency data: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// ReadFile reads the Data in the file at path.
func ReadFile(path string) (*Data, error) { return jsonfile.ReadFile(path, Read) }
