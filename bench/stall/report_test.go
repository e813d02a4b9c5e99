package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// capture is a small run: a pro key whose client saw a 429 during the
// stall, and its probe.
func capture() Capture {
	recs := seq(ok(0, "n1", 3), ok(5100, "n3", 2), no(5200, "n1", 1), ok(6300, "n3", 1), ok(10_100, "n2", 140))
	recs[4].Probe = true
	return Capture{
		Commit: "abc1234", Command: "bench/stall.sh", Mode: "full", Date: t0, Machine: "2 CPUs",
		Window: time.Minute, Plan: Plan{Rate: 13, Warmup: 5 * time.Second, Stall: 4 * time.Second, Windows: 1, Timeout: 3 * time.Second, ProbeAfter: time.Second},
		Nodes: []Node{{Name: "n1", URL: "http://127.0.0.21:1"}, {Name: "n2", URL: "http://127.0.0.22:1"}, {Name: "n3", URL: "http://127.0.0.23:1"}},
		Owner: "n2",
		Keys:  []Key{{Variant: "others", Role: "pro", Tier: "pro", APIKey: "k", Limit: 150, Targets: []string{"n1", "n3"}}},
		T0:    t0, Stop: t0.Add(5 * time.Second), Cont: t0.Add(9 * time.Second),
		Watch:     memberWatch{Observer: "n1", Seen: []stateSince{{State: "alive", Since: t0.Add(4500 * time.Millisecond)}}},
		Fallbacks: map[string]float64{"n1": 3, "n3": 4},
		Records:   recs,
	}
}

func TestAnalyze(t *testing.T) {
	res := analyze(capture())
	require.Len(t, res, 1)
	r := res[0]
	assert.Equal(t, []WindowCount{{Window: 1, Offered: 5, Admitted: 4, Refused: 1, Reference: 5, FirstAdmitted: 0, FirstReference: 0}}, r.Windows)
	assert.Equal(t, 3, r.During.Sent)
	assert.Equal(t, 1, r.During.Needless)
	assert.Equal(t, 1, r.During.Longest.Refusals)
	assert.Equal(t, RetrySummary{Refusals: 1, Kept: 1}, r.Retry)
	assert.Equal(t, OwnerCount{Probe: 4, Counted: 10, Received: 4, Extra: 6}, r.Owner)
	assert.Empty(t, r.Problems)
}

func TestRunFromRecordsWritesTheDocSection(t *testing.T) {
	dir := t.TempDir()
	b, err := json.Marshal(capture())
	require.NoError(t, err)
	in := filepath.Join(dir, "run.json")
	require.NoError(t, os.WriteFile(in, b, 0o644))
	doc := filepath.Join(dir, "stall.md")
	require.NoError(t, os.WriteFile(doc, []byte("# Stall\n\nintro\n\n"+beginMarker+"\nold\n"+endMarker+"\n\nafter\n"), 0o644))

	var stderr strings.Builder
	require.NoError(t, run(t.Context(), []string{"-from", in, "-out", dir, "-doc", doc}, &stderr), "stderr: %s", stderr.String())

	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	require.NoError(t, err)
	for _, want := range []string{"code: abc1234", "Command: `bench/stall.sh`", "| the 2 other nodes | pro | 150 | 1 | 5 | 4 | 5 | 5 | 1 | 0 | 0.0 s | 0.0 s |",
		"| the 2 other nodes | pro | SIGCONT + 1.1 s | 200, Limit 150, Remaining 140 | 10 | 4 | 6 |", "n1 saw n2 as: alive from SIGSTOP -0.5 s"} {
		assert.Contains(t, string(md), want)
	}
	got, err := os.ReadFile(doc)
	require.NoError(t, err)
	assert.Equal(t, "# Stall\n\nintro\n\n"+beginMarker+"\n"+strings.TrimRight(string(md), "\n")+"\n"+endMarker+"\n\nafter\n", string(got))
}

func TestParseOptions(t *testing.T) {
	_, err := parseOptions([]string{"-out", "x"}, &strings.Builder{})
	assert.ErrorContains(t, err, "are required")
	_, err = parseOptions([]string{"-out", "x", "-nodes", "a", "-pids", "1", "-tiers", "t", "-admin-token", "s", "-windows", "5"}, &strings.Builder{})
	assert.ErrorContains(t, err, "-windows 1 to 3")
	o, err := parseOptions([]string{"-out", "x", "-from", "run.json"}, &strings.Builder{})
	require.NoError(t, err)
	assert.Equal(t, "run.json", o.from)
}
