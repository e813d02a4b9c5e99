package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 2.5165824e+07
tierlimit_decision_duration_seconds_count{path="forwarded"} 120
tierlimit_decision_duration_seconds_count{path="local"} 30 1733124000000
tierlimit_decision_duration_seconds_sum{path="forwarded"} 0.036
tierlimit_decision_duration_seconds_bucket{path="local",le="1e-06"} 3
odd_labels{a="x,y",b="say \"hi\"\n",c="back\\slash"} 1
broken{a="x} 1
`

func TestParseMetrics(t *testing.T) {
	all, err := parseMetrics(strings.NewReader(exposition), func(string) bool { return true })
	require.NoError(t, err)
	want := []sample{
		{Name: "go_goroutines", Value: 42},
		{Name: "process_resident_memory_bytes", Value: 25165824},
		{Name: "tierlimit_decision_duration_seconds_count", Labels: map[string]string{"path": "forwarded"}, Value: 120},
		{Name: "tierlimit_decision_duration_seconds_count", Labels: map[string]string{"path": "local"}, Value: 30},
		{Name: "tierlimit_decision_duration_seconds_sum", Labels: map[string]string{"path": "forwarded"}, Value: 0.036},
		{Name: "tierlimit_decision_duration_seconds_bucket", Labels: map[string]string{"path": "local", "le": "1e-06"}, Value: 3},
		{Name: "odd_labels", Labels: map[string]string{"a": "x,y", "b": "say \"hi\"\n", "c": `back\slash`}, Value: 1},
	}
	assert.Equal(t, want, all, "the line with an unclosed label value is skipped")

	kept, err := parseMetrics(strings.NewReader(exposition), func(n string) bool { return n == "go_goroutines" })
	require.NoError(t, err)
	assert.Equal(t, want[:1], kept)
}

func TestSum(t *testing.T) {
	s, err := parseMetrics(strings.NewReader(exposition), func(string) bool { return true })
	require.NoError(t, err)
	assert.Equal(t, 150.0, sum(s, "tierlimit_decision_duration_seconds_count"))
	assert.Equal(t, 120.0, sum(s, "tierlimit_decision_duration_seconds_count", "path", "forwarded"))
	assert.Equal(t, 0.0, sum(s, "tierlimit_decision_duration_seconds_count", "path", "lease"))
}

func TestParseProcStat(t *testing.T) {
	m, err := parseProcStat(strings.NewReader("cpu  100 5 50 1000 20 1 2 3 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n"))
	require.NoError(t, err)
	assert.Equal(t, machineCPU{Total: 100 + 5 + 50 + 1000 + 20 + 1 + 2 + 3, Idle: 1020, Softirq: 2}, m, "guest time is already in user")

	_, err = parseProcStat(strings.NewReader("intr 1\n"))
	assert.Error(t, err)
}

func TestSnapScrapesEveryNodeButTheGone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, exposition)
	}))
	defer srv.Close()
	dir := t.TempDir()
	path, _ := writeNodes(t, dir, map[string]string{"a": srv.URL, "b": srv.URL, "c": "http://127.0.0.1:1"}, "a", "b", "c", "d")
	out := filepath.Join(dir, "snap.json")
	require.NoError(t, run(t.Context(), []string{"snap", "-nodes", path, "-gone", "d", "-out", out}, io.Discard, io.Discard))
	var got snapshot
	require.NoError(t, readJSON(out, &got))
	assert.Len(t, got.Nodes, 2)
	assert.Equal(t, 42.0, sum(got.Nodes["a"], "go_goroutines"))
	assert.Empty(t, got.Nodes["a"][0].Labels)
	assert.Equal(t, 120.0, sum(got.Nodes["b"], "tierlimit_decision_duration_seconds_count", "path", "forwarded"))
	assert.Contains(t, got.Errors, "c", "a node that does not answer is an error, not a zero")
	assert.NotContains(t, got.Errors, "d")
	assert.False(t, got.Time.IsZero())
}

func TestParseSNMP(t *testing.T) {
	const snmp = `Ip: Forwarding DefaultTTL
Ip: 1 64
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 70207 666 12 70891 10 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
`
	u, err := parseSNMP(strings.NewReader(snmp))
	require.NoError(t, err)
	assert.Equal(t, udpCounters{InDatagrams: 70207, InErrors: 12, RcvbufErrors: 10}, u)

	_, err = parseSNMP(strings.NewReader("Ip: 1\n"))
	assert.Error(t, err)
}

func TestBusy(t *testing.T) {
	a := &machineCPU{Total: 1000, Idle: 800, Softirq: 10}
	b := &machineCPU{Total: 1200, Idle: 900, Softirq: 30}
	all, softirq, ok := busy(a, b)
	require.True(t, ok)
	assert.InDelta(t, 0.5, all, 1e-9)
	assert.InDelta(t, 0.1, softirq, 1e-9)
	_, _, ok = busy(b, a)
	assert.False(t, ok, "counters that went back")
	_, _, ok = busy(nil, b)
	assert.False(t, ok)
}
