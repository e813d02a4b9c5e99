package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTakeKeysHandsOutFreshSlices(t *testing.T) {
	dir := t.TempDir()
	cfg := tiersFile{WindowSeconds: 60, Tiers: map[string]json.RawMessage{
		"free": json.RawMessage(`{"limit":10}`), "enterprise": json.RawMessage(`{"limit":1000}`),
	}, APIKeys: map[string]string{"free-demo-1": "free", "ent-demo-1": "enterprise"}}
	for i := 1; i <= 12; i++ {
		cfg.APIKeys[fmt.Sprintf("lg-free-ab12-%d", i)] = "free"
		cfg.APIKeys[fmt.Sprintf("lg-enterprise-ab12-%d", i)] = "enterprise"
	}
	big := filepath.Join(dir, "big.json")
	require.NoError(t, writeJSON(big, cfg))
	state := filepath.Join(dir, "used.json")

	take := func(spec string) map[string]string {
		t.Helper()
		out := filepath.Join(dir, "out.json")
		require.NoError(t, takeKeys(big, state, spec, out), "takeKeys(%q)", spec)
		got, err := readTiers(out)
		require.NoError(t, err)
		assert.Equal(t, 60, got.WindowSeconds)
		assert.Len(t, got.Tiers, 2, "tiers are copied")
		return got.APIKeys
	}
	assert.Equal(t, map[string]string{
		"lg-enterprise-ab12-1": "enterprise", "lg-enterprise-ab12-2": "enterprise",
		"lg-enterprise-ab12-3": "enterprise", "lg-enterprise-ab12-4": "enterprise",
		"lg-enterprise-ab12-5": "enterprise",
	}, take("enterprise=5"))
	assert.Equal(t, map[string]string{
		"lg-enterprise-ab12-6": "enterprise", "lg-enterprise-ab12-7": "enterprise",
		"lg-enterprise-ab12-8": "enterprise", "lg-enterprise-ab12-9": "enterprise",
		"lg-enterprise-ab12-10": "enterprise", "lg-free-ab12-1": "free",
	}, take("enterprise=5,free=1"), "the second slice follows the first, by number (10 after 9)")

	err := takeKeys(big, state, "enterprise=3", filepath.Join(dir, "x.json"))
	assert.ErrorContains(t, err, "12 generated keys, 10 used, 3 more wanted")
	for _, bad := range []string{"", "enterprise", "enterprise=0", "=3", "enterprise=x"} {
		assert.Error(t, takeKeys(big, state, bad, filepath.Join(dir, "x.json")), "takeKeys(%q)", bad)
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# T\n\n## Other\ntext\n"
	once := string(replaceSection([]byte(doc), "table 1\n"))
	assert.Equal(t, "# T\n\n## Other\ntext\n\n"+sectionTitle+"\n\n"+beginMarker+"\ntable 1\n"+endMarker+"\n", once,
		"without markers the section is appended")

	withText := strings.Replace(once, endMarker+"\n", endMarker+"\n\nanalysis by hand\n", 1)
	twice := string(replaceSection([]byte(withText), "table 2\n"))
	assert.Equal(t, strings.Replace(withText, "table 1", "table 2", 1), twice,
		"with markers only the text between them changes")
}

// fakeReport returns a loadgen -json report.
func fakeReport(c int, rps, p50, p99 float64, acc string) string {
	s := fmt.Sprintf(`{"concurrency":%d,"elapsed_seconds":10,"requests":%d,"requests_per_second":%g,`+
		`"status":{"200":%d,"401":0,"429":0,"other_4xx":0,"5xx":0,"other_status":0,"transport_error":0},`+
		`"latency":{"p50_us":%g,"p99_us":%g}`, c, int(rps*10), rps, int(rps*10), p50, p99)
	if acc != "" {
		s += `,"accuracy":{"tiers":[` + acc + `]}`
	}
	return s + "}"
}

func TestWriteTable(t *testing.T) {
	dir := t.TempDir()
	var tsv strings.Builder
	add := func(kind, design string, nodes, c int, fb, body string) {
		path := filepath.Join(dir, fmt.Sprintf("%s-%d-%d-%d.json", kind, len(tsv.String()), nodes, c))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
		fmt.Fprintf(&tsv, "%s\t%s\t%d\t%d\t%s\t%s\t3\n", kind, design, nodes, c, path, fb)
	}
	exact := `{"tier":"free","keys":5,"limits":[20],"bound":20,"admitted_min":20,"admitted_max":20,"sent_avg":400}`
	over := `{"tier":"free","keys":5,"limits":[20],"bound":20,"admitted_min":20,"admitted_max":34,"sent_avg":400,"over_admission_pct":70}`
	add("load:enterprise", "floor", 1, 1, "-", fakeReport(1, 5000, 200, 300, ""))
	add("load:enterprise", "redis", 3, 1, "0", fakeReport(1, 2500, 400, 800, ""))
	add("load:enterprise", "tierlimit", 3, 1, "0", fakeReport(1, 3000, 330, 400, ""))
	add("load:enterprise", "floor", 1, 64, "-", fakeReport(64, 12000, 4000, 16000, ""))
	add("load:enterprise", "floor", 3, 64, "-", fakeReport(64, 10000, 5000, 18000, ""))
	add("load:enterprise", "redis", 3, 64, "12", fakeReport(64, 6000, 9000, 30000, ""))
	add("load:enterprise", "tierlimit", 3, 64, "0", fakeReport(64, 9600, 6000, 20000, ""))
	add("load:enterprise", "tierlimit", 1, 64, "0", fakeReport(64, 10000, 6000, 20000, ""))
	add("load:enterprise", "tierlimit:-lease-ttl -1s", 3, 64, "48000", fakeReport(64, 8000, 9000, 30000, ""))
	add("load:mixed", "floor", 1, 64, "-", fakeReport(64, 10000, 4000, 16000, ""))
	add("load:mixed", "tierlimit", 3, 64, "0", fakeReport(64, 9000, 6000, 20000, ""))
	add("accuracy", "redis", 3, 64, "0", fakeReport(64, 5000, 1, 1, over))
	add("accuracy", "tierlimit", 3, 64, "0", fakeReport(64, 5000, 1, 1, exact))
	runs := filepath.Join(dir, "runs.tsv")
	require.NoError(t, os.WriteFile(runs, []byte(tsv.String()), 0o644))
	meta := filepath.Join(dir, "meta.txt")
	require.NoError(t, os.WriteFile(meta, []byte("date=today\nmachine=2 CPUs\n"), 0o644))
	readme := filepath.Join(dir, "README.md")
	require.NoError(t, os.WriteFile(readme, []byte("# R\n"), 0o644))
	out := filepath.Join(dir, "results.md")

	require.NoError(t, writeTable(runs, meta, out, readme))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	md := string(data)
	for _, want := range []string{
		"_date: today; machine: 2 CPUs._",
		"| enterprise | no limiter (floor) | 1 | 1 | 5,000 | 100% | 100% | 200 µs | 300 µs | ×1.00 | ×1.00 | 0 | 0 | - | 3% |",
		"| enterprise | central Redis | 3 | 64 | 6,000 | 50% | 60% | 9.00 ms | 30.00 ms | ×2.25 | ×1.88 | 0 | 0 | 12 (0.0%) | 3% |",
		"| enterprise | tierlimit cluster | 3 | 64 | 9,600 | 80% | 96% |",
		"| mixed | tierlimit cluster | 3 | 64 | 9,000 | 90% | – |",
		"enterprise load, c = 64, 3 nodes: tierlimit keeps **80%** of the floor's throughput " +
			"(96% of 3 bare processes', which keep 83% of one's) (target ≥ 75%): met; central Redis keeps 50%.",
		"enterprise load, c = 64, 1 node: tierlimit keeps **83%** of the floor's throughput (target ≥ 90%): **missed**.",
		"mixed load, c = 64, 3 nodes: tierlimit keeps **90%** of the floor's throughput (target ≥ 75%): met.",
		"enterprise load, c = 1, 3 nodes: tierlimit adds **+100 µs** to the floor's p99 (target ≤ +150 µs): met; central Redis adds +500 µs.",
		"Accuracy, tierlimit, 3 nodes: over-admission **0.00%** at most in any tier (target 0): met; under-admission **0.00%** (target ≤ 1% of L): met.",
		"| enterprise | tierlimit cluster, `-lease-ttl -1s` | 3 | 64 | 8,000 | 67% | 80% | 9.00 ms | 30.00 ms | ×2.25 | ×1.88 | 0 | 0 | 48,000 (60.0%) | 3% |",
		"enterprise load, c = 64, 3 nodes: tierlimit (`-lease-ttl -1s`) keeps **67%** of the floor's throughput (80% of 3 bare processes', " +
			"which keep 83% of one's) (target ≥ 75%): **missed**, " +
			"with 60% of its requests decided locally, without their owner (fallbacks);",
		"| central Redis | 3 | 20–34 / 20 (sent 400) | – | – | 70.00% | 0.00% | 0 | not exact |",
		"| tierlimit cluster | 3 | 20 / 20 (sent 400) | – | – | 0.00% | 0.00% | 0 | exact: every key admitted exactly L |",
	} {
		assert.Contains(t, md, want)
	}
	rd, err := os.ReadFile(readme)
	require.NoError(t, err)
	assert.Contains(t, string(rd), beginMarker+"\n_date: today")
}

func TestFormatting(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{thousands(999.6), "1,000"},
		{thousands(1234567), "1,234,567"},
		{thousands(12), "12"},
		{micros(999.4), "999 µs"},
		{micros(1500), "1.50 ms"},
		{signedMicros(-250), "−250 µs"},
		{signedMicros(250), "+250 µs"},
	} {
		assert.Equal(t, tt.want, tt.got)
	}
}
