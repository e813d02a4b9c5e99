package latency

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// writeReport writes a loadgen report with lat as its latency to
// dir/results/name and returns its path.
func writeReport(t *testing.T, dir, name string, rps float64, lat loadreport.Latency) string {
	t.Helper()
	path := filepath.Join(dir, "results", name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	data, err := json.Marshal(loadreport.Report{Concurrency: 64, Requests: lat.Count, RequestsPerSecond: rps, Latency: lat})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

// benchRun lays out what bench/run.sh leaves: runs.tsv, meta.txt and the
// reports, one with a distribution and one without (an older loadgen).
func benchRun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	dist := writeReport(t, dir, "tl3-c64-enterprise-try1.json", 9000, loadreport.Latency{
		Count: 27000, P50: 5000, P90: 9000, P99: 15000, P999: 25000, Max: 40000,
		Distribution: []loadreport.Quantile{{Percentile: 99.99, Value: 30000}, {Percentile: 50, Value: 5000}, {Percentile: 99, Value: 15000}, {Percentile: 90, Value: 9000}},
	})
	old := writeReport(t, dir, "redis3-c64-enterprise-try2.json", 7000, loadreport.Latency{
		Count: 21000, P50: 6000, P90: 11000, P99: 20000, P999: 31000, Max: 50000,
	})
	acc := writeReport(t, dir, "tl3-accuracy.json", 1000, loadreport.Latency{Count: 100, P50: 1})
	runs := strings.Join([]string{
		"load:enterprise\ttierlimit\t3\t64\t" + dist + "\t12\t3",
		"load:enterprise\tredis:-pool 64\t3\t64\t" + old + "\t0\t5",
		"",
		"accuracy\ttierlimit\t3\t64\t" + acc + "\t0\t2",
	}, "\n") + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "runs.tsv"), []byte(runs), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meta.txt"), []byte("date=2026-12-02 06:00 UTC\nmachine=2 CPUs\nmode=quick\n"), 0o644))
	return filepath.Join(dir, "runs.tsv")
}

func TestFromRuns(t *testing.T) {
	d, err := FromRuns(benchRun(t))
	require.NoError(t, err)
	require.Len(t, d.Series, 2, "the accuracy run is left out")

	tl := d.Series[0]
	assert.Equal(t, Series{
		Load: LoadEnterprise, Design: DesignTierlimit, Nodes: 3, Concurrency: 64, Count: 27000, RequestsPerSecond: 9000,
		Points:    []loadreport.Quantile{{Percentile: 50, Value: 5000}, {Percentile: 90, Value: 9000}, {Percentile: 99, Value: 15000}, {Percentile: 99.99, Value: 30000}},
		MaxMicros: 40000,
	}, tl, "a report with a distribution: its points, sorted")

	rd := d.Series[1]
	assert.Equal(t, DesignRedis, rd.Design)
	assert.Equal(t, "-pool 64", rd.Variant)
	assert.True(t, rd.Quantiles, "a report without a distribution falls back to its quantiles")
	assert.Equal(t, []loadreport.Quantile{{Percentile: 50, Value: 6000}, {Percentile: 90, Value: 11000}, {Percentile: 99, Value: 20000}, {Percentile: 99.9, Value: 31000}}, rd.Points)

	assert.Equal(t, "quick", d.MetaValue("mode"))
	assert.Equal(t, "2026-12-02 06:00 UTC", d.MetaValue("date"))
	assert.Equal(t, "", d.MetaValue("code"))
	assert.NoError(t, d.Validate())
}

func TestFromRunsMovedDirectory(t *testing.T) {
	runs := benchRun(t)
	moved := filepath.Join(t.TempDir(), "run")
	require.NoError(t, os.Rename(filepath.Dir(runs), moved))
	d, err := FromRuns(filepath.Join(moved, "runs.tsv"))
	require.NoError(t, err, "reports found in results/ beside the moved runs.tsv")
	assert.Len(t, d.Series, 2)
}

func TestFromRunsErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, runs, want string
	}{
		{"fields", "load:enterprise\ttierlimit\t3\n", "runs.tsv:1: 3 fields, want 7"},
		{"nodes", "load:enterprise\ttierlimit\tthree\t64\tx.json\t0\t0\n", "runs.tsv:1: nodes"},
		{"report", "load:enterprise\ttierlimit\t3\t64\tmissing.json\t0\t0\n", "missing.json"},
		{"no load runs", "accuracy\ttierlimit\t3\t64\tx.json\t0\t0\n", "no load runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "runs.tsv")
			require.NoError(t, os.WriteFile(path, []byte(tc.runs), 0o644))
			_, err := FromRuns(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestTail(t *testing.T) {
	s := Series{Count: 5000, Points: []loadreport.Quantile{
		{Percentile: 50, Value: 1}, {Percentile: 99, Value: 2}, {Percentile: 99.8, Value: 3}, {Percentile: 99.9, Value: 4}, {Percentile: 99.99, Value: 5},
	}}
	// Above p99.8 lie 10 of 5,000 responses, above p99.9 only 5.
	assert.Equal(t, []loadreport.Quantile{{Percentile: 50, Value: 1}, {Percentile: 99, Value: 2}, {Percentile: 99.8, Value: 3}}, s.Tail(10))
	assert.Len(t, s.Tail(1), 4)
}

func TestReadWriteRoundTrip(t *testing.T) {
	want, err := FromRuns(benchRun(t))
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, Write(&b, want))
	got, err := Read(&b)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	path := filepath.Join(t.TempDir(), "latency.json")
	require.NoError(t, WriteFile(path, want))
	got, err = ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestReadRejects(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"no series", `{"series": []}`, "no series"},
		{"no points", `{"series": [{"design": "floor", "load": "enterprise", "concurrency": 1}]}`, "no points"},
		{"not ascending", `{"series": [{"design": "floor", "points": [{"percentile": 99, "us": 5}, {"percentile": 50, "us": 1}]}]}`, "not ascending"},
		{"zero latency", `{"series": [{"design": "floor", "points": [{"percentile": 50, "us": 0}]}]}`, "out of range"},
		{"percentile 100", `{"series": [{"design": "floor", "points": [{"percentile": 100, "us": 3}]}]}`, "out of range"},
		{"syntax", `{"series": [`, "read latency data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.doc))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
