package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// writeReport writes a loadgen -json report with the given p50, p99 (µs)
// and throughput to dir/name and returns name.
func writeReport(t *testing.T, dir, name string, p50, p99, rps float64, acc *loadreport.Accuracy) string {
	t.Helper()
	rep := loadreport.Report{
		Requests: uint64(rps * 10), RequestsPerSecond: rps,
		Status:   loadreport.Status{OK: uint64(rps * 10)},
		Latency:  loadreport.Latency{Count: uint64(rps * 10), P50: p50, P99: p99, P999: 2 * p99},
		Accuracy: acc,
	}
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	return name
}

// exactAccuracy is an accuracy table whose keys were each admitted their
// limit, or over limit by over.
func exactAccuracy(over uint64) *loadreport.Accuracy {
	tr := loadreport.TierAccuracy{Tier: "free", Keys: 5, Limits: []int{20}, Bound: 20,
		AdmittedMin: 20, AdmittedAvg: float64(20 + over), AdmittedMax: 20 + over, SentAvg: 400}
	if over > 0 {
		tr.OverPercent = 100 * float64(over) / 20
	}
	return &loadreport.Accuracy{Windows: 1, Tiers: []loadreport.TierAccuracy{tr}}
}

// fixture writes a whole run's inputs into a temporary directory: the
// proxy adds 150 µs, the FastAPI path 800 µs (200 µs over 30 hot keys),
// nginx's check 100 µs, and the Redis stack is faster at c=64 but has the
// worse p99. It returns the directory.
func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	lines := []string{}
	add := func(kind, stack string, c int, p50, p99, rps float64, cpu string, acc *loadreport.Accuracy) {
		name := writeReport(t, dir, fmt.Sprintf("%s-%s-%d.json", kind, stack, c), p50, p99, rps, acc)
		line := []string{kind, stack, fmt.Sprint(c), name, cpu, "3"}
		switch {
		case stack == stackTL && kind == kindLoad:
			line = append(line, fmt.Sprintf("local=%d:0.000100,forwarded=%d:0.030000", c*10, c*30))
		case stack == stackTL && kind == kindHot:
			line = append(line, "local=10:0.000100,lease=20:0.000080,forwarded=10:0.010000")
		case stack == stackNginxAuth:
			line = append(line, fmt.Sprintf("local=%d:%.6f", c*100, float64(c)*0.0005))
		}
		lines = append(lines, strings.Join(line, "\t"))
	}
	add("load", stackFloor, 1, 100, 300, 8000, "upstream=1.5,loadgen=2", nil)
	add("load", stackProxy, 1, 250, 600, 3500, "node=2,upstream=1,loadgen=1", nil)
	add("load", stackFloor, 64, 4000, 9000, 30000, "upstream=10", nil)
	add("load", stackProxy, 64, 8000, 20000, 15000, "node=10,upstream=5", nil)
	add("load", stackBare, 1, 1000, 2000, 900, "app=9", nil)
	add("load", stackTL, 1, 1800, 3000, 550, "app=9,node=1", nil)
	add("load", stackRedis, 1, 1700, 3500, 580, "app=9,redis=0.5", nil)
	add("load", stackBare, 64, 30000, 60000, 2000, "app=20", nil)
	add("load", stackTL, 64, 50000, 90000, 1200, "app=20,node=5", nil)
	add("load", stackRedis, 64, 45000, 95000, 1300, "app=20,redis=2", nil)
	add("hot", stackBare, 1, 1000, 2000, 900, "app=9", nil)
	add("hot", stackTL, 1, 1200, 2500, 800, "app=9,node=0.5", nil)
	add("hot", stackRedis, 1, 1700, 3500, 580, "app=9,redis=0.5", nil)
	add("load", stackNginx, 1, 200, 400, 4000, "nginx=2,upstream=1,loadgen=1", nil)
	add("load", stackNginxAuth, 1, 300, 700, 3000, "nginx=3,node=1,upstream=1,loadgen=1", nil)
	add("load", stackNginx, 64, 3000, 8000, 20000, "nginx=8,upstream=4", nil)
	add("load", stackNginxAuth, 64, 5000, 12000, 12000, "nginx=9,node=4,upstream=3", nil)
	add("accuracy", stackTL, 64, 0, 0, 1000, "-", exactAccuracy(0))
	add("accuracy", stackRedisEdg, 64, 0, 0, 1000, "-", exactAccuracy(20))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "runs.tsv"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))

	uploads := "direct\t0.2\t209715200\t200\t-\t-\tno\n" +
		"direct\t0.4\t209715200\t200\t-\t-\tno\n" +
		"direct\t0.3\t209715200\t200\t-\t-\tno\n" +
		"proxy\t0.5\t209715200\t200\t20480\t22528\tyes\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "upload.tsv"), []byte(uploads), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meta.txt"), []byte("command=bench/anystack.sh\ncode=abc123 | dirty\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "profiles"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "profiles", "proxy-node.txt"), []byte("flat  flat%\n10ms 50% syscall.Syscall\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "profiles", "zz-other.txt"), []byte("other\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "profiles", "tierlimit-app.txt"), []byte("1.00 s profiled (wall time)\n\n| self % | calls | function |\n"), 0o644))
	return dir
}

func TestJudgeTargets(t *testing.T) {
	dir := fixture(t)
	in, err := readInputs(filepath.Join(dir, "runs.tsv"), filepath.Join(dir, "upload.tsv"), filepath.Join(dir, "meta.txt"), filepath.Join(dir, "profiles"))
	require.NoError(t, err)

	var got []string
	var info []bool
	for _, tg := range judge(in) {
		require.NotNil(t, tg.met, "target %q not judged", tg.what)
		got = append(got, fmt.Sprintf("%t %s", *tg.met, tg.measured))
		info = append(info, tg.info)
	}
	assert.Equal(t, []string{
		"true +0.150 ms (0.100 → 0.250 ms)",
		"true +0.800 ms (1.000 → 1.800 ms)",
		"false 1,200 vs 1,300 req/s (×0.92)",
		"true 3.000 vs 3.500 ms",
		"true 90.0 vs 95.0 ms",
		"true admitted free 20–20 of 20",
		"true +0.200 ms (1.000 → 1.200 ms)",
		"true 2.500 vs 3.500 ms",
	}, got)
	assert.Equal(t, []bool{false, false, false, false, false, false, true, true}, info, "informational targets: the hot-key runs'")
}

func TestJudgeWithoutRuns(t *testing.T) {
	for _, tg := range judge(&inputs{}) {
		assert.Nil(t, tg.met, "target %q judged without runs", tg.what)
	}
}

func TestRunWritesResultsAndDoc(t *testing.T) {
	dir := fixture(t)
	doc := filepath.Join(dir, "anystack.md")
	require.NoError(t, os.WriteFile(doc, []byte("# Title\n\nintro\n\n"+beginMarker+"\nold\n"+endMarker+"\n\nafter\n"), 0o644))
	out := filepath.Join(dir, "results.md")
	var stderr bytes.Buffer
	err := run([]string{"-runs", filepath.Join(dir, "runs.tsv"), "-upload", filepath.Join(dir, "upload.tsv"),
		"-meta", filepath.Join(dir, "meta.txt"), "-profiles", filepath.Join(dir, "profiles"), "-out", out, "-doc", doc}, &stderr)
	require.NoError(t, err, stderr.String())

	res, err := os.ReadFile(out)
	require.NoError(t, err)
	md := string(res)
	for _, want := range []string{
		"| code | abc123 \\| dirty |",
		"| the proxy adds ≤ 0.2 ms to p50 at c=1 | +0.150 ms (0.100 → 0.250 ms) | **met** |",
		"| FastAPI + tierlimit beats the Redis stack on throughput at c=64 | 1,200 vs 1,300 req/s (×0.92) | **missed** |",
		// floor c=1: 80,000 requests, 1.5 s of upstream CPU: 0.019 ms each
		"| Go upstream (bench/floor), direct | 1 | 0.100 | 0.300 | 0.600 | 8,000 | 80000 | 0 | 0 | - | - / 1.50 / 2.00 | 0.019 | 3 |",
		"Added by the proxy: c=1: p50 +0.150 ms, p99 +0.300 ms, throughput 44% of direct; c=64: p50 +4.000 ms, p99 +11.0 ms, throughput 50% of direct.",
		"| direct | 3 | 209715200 | 200 | 0.300 (0.200, 0.400, 0.300) | 699 | - | - | - |",
		"| proxy | 1 | 209715200 | 200 | 0.500 (0.500) | 419 | 20.0 | 22.0 | +2.0 |",
		"| FastAPI + TierLimitMiddleware (3-node cluster) | +0.800 ms | +1.000 ms | +20.0 ms | +30.0 ms | 60% |",
		"| FastAPI + Redis middleware, across a window's end | free | 20 | 20 / 40.0 / 40 | 400 | 100.00 | 0.00 | 0 | 0 | **no** |",
		"```\nflat  flat%\n10ms 50% syscall.Syscall\n```",
		"#### zz-other\n\n```\nother\n```",
		"1.00 s profiled (wall time)\n\n| self % | calls | function |",
		// c=1: 10 local decisions in 100 µs, 30 forwarded in 30 ms
		"| load, 500 keys | 1 | 40 | 25.0% (10 µs) | - | 75.0% (1000 µs) | - | - | - |",
		"| 30 hot keys, for information: the FastAPI path adds ≤ 1 ms to p50 over bare FastAPI at c=1 | +0.200 ms (1.000 → 1.200 ms) | met (informational) |",
		"**Passed**, 19 runs and 4 uploads",
		"### (b) FastAPI three ways, 30 hot keys, c=1",
		"| FastAPI + TierLimitMiddleware (3-node cluster) | 1 | 1.200 | 2.500 | 5.000 | 800 | 8000 | 0 | 0 | 0 | 9.00 / 0.50 / - / - | 1.188 | 3 |",
		"| stack | c=1 p50 | c=1 p99 | c=1 throughput, % of bare |\n|---|---:|---:|---:|\n| FastAPI + TierLimitMiddleware (3-node cluster) | +0.200 ms | +0.500 ms | 89% |",
		"| load, 30 hot keys | 1 | 40 | 25.0% (10 µs) | 50.0% (4 µs) | 25.0% (1000 µs) | - | - | - |",
		"| nginx, plain (bench/nginx/plain.conf) → the upstream | 1 | 0.200 | 0.400 | 0.800 | 4,000 | 40000 | 0 | 0 | - | 2.00 / - / 1.00 / 1.00 | 0.075 | 3 |",
		// nginx, node and upstream: 5 s over 30,000 requests
		"| nginx as shipped (examples/nginx/nginx.conf): auth_request → node → the upstream | 1 | 0.300 | 0.700 | 1.400 | 3,000 | 30000 | 0 | 0 | 0 | 3.00 / 1.00 / 1.00 / 1.00 | 0.167 | 3 |",
		"| load, 500 keys | 64 | 6400 | 100.0% (5 µs) | - | - | - | - | - |",
		"Added by the check: c=1: p50 +0.100 ms, p99 +0.300 ms, throughput 75% of plain nginx; c=64: p50 +2.000 ms, p99 +4.000 ms, throughput 60% of plain nginx.",
		"Added by nginx with the check over the upstream reached directly (its runs in (a)): c=1: p50 +0.200 ms, p99 +0.400 ms, throughput 38% of direct;",
	} {
		assert.Contains(t, md, want)
	}

	assert.Less(t, strings.Index(md, "cmd/node -upstream (the proxy) under c=1"), strings.Index(md, "uvicorn 1 of FastAPI + TierLimitMiddleware"),
		"profiles in the order of profileTitles")
	assert.Less(t, strings.Index(md, "uvicorn 1 of FastAPI + TierLimitMiddleware"), strings.Index(md, "#### zz-other"), "unknown profiles last")

	updated, err := os.ReadFile(doc)
	require.NoError(t, err)
	assert.Equal(t, "# Title\n\nintro\n\n"+beginMarker+"\n"+strings.TrimRight(md, "\n")+"\n"+endMarker+"\n\nafter\n", string(updated))
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
		return p
	}
	rep := writeReport(t, dir, "r.json", 1, 2, 3, nil)
	tests := []struct {
		name    string
		read    func() error
		wantErr string
	}{
		{"runs fields", func() error { _, err := readRuns(write("a.tsv", "load\tfloor\t1\n")); return err }, "3 fields, want 6 or 7"},
		{"runs kind", func() error { _, err := readRuns(write("b.tsv", "x\tfloor\t1\t"+rep+"\t-\t0\n")); return err }, `unknown kind "x"`},
		{"runs stack", func() error { _, err := readRuns(write("c.tsv", "load\tnope\t1\t"+rep+"\t-\t0\n")); return err }, `unknown stack "nope"`},
		{"runs cpu", func() error { _, err := readRuns(write("d.tsv", "load\tfloor\t1\t"+rep+"\tapp\t0\n")); return err }, `cpu "app"`},
		{"runs decisions", func() error {
			_, err := readRuns(write("h.tsv", "load\tproxy\t1\t"+rep+"\t-\t0\tlocal=x:1\n"))
			return err
		}, `decisions "local=x:1"`},
		{"runs report", func() error { _, err := readRuns(write("e.tsv", "load\tfloor\t1\tmissing.json\t-\t0\n")); return err }, "missing.json"},
		{"uploads path", func() error { _, err := readUploads(write("f.tsv", "up\t1\t2\t200\t-\t-\tno\n")); return err }, `unknown path "up"`},
		{"uploads number", func() error { _, err := readUploads(write("g.tsv", "proxy\t1\t2\t200\tx\t3\tyes\n")); return err }, `parsing "x"`},
		{"meta", func() error { _, err := readMeta(write("m.txt", "novalue\n")); return err }, "want key=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorContains(t, tt.read(), tt.wantErr)
		})
	}
}

func TestFormatting(t *testing.T) {
	assert.Equal(t, []string{"0", "999", "1,000", "-1,234,568"}, []string{thousands(0), thousands(999), thousands(1000), thousands(-1234567.6)})
	assert.Equal(t, []string{"0.150", "+0.150", "-0.150", "12.3"}, []string{ms(150), signedMS(150), signedMS(-150), ms(12345)})
	assert.Equal(t, 2.0, median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
	cpu, err := parseCPU("app=1.5,node=0")
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{"app": 1.5, "node": 0}, cpu)
	_, err = parseCPU("app=-1")
	assert.Error(t, err, "negative seconds")
}
