package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// okReport is a run of n requests, all admitted, every answer with the
// rate-limit headers.
func okReport(n uint64) *loadreport.Report {
	return &loadreport.Report{Requests: n, Status: loadreport.Status{OK: n}}
}

func TestSmoke(t *testing.T) {
	tests := []struct {
		name    string
		runs    []result
		uploads []upload
		want    []string
	}{
		{"clean", []result{
			{kind: kindLoad, stack: stackTL, c: 64, rep: okReport(1000)},
			{kind: kindHot, stack: stackBare, c: 1, rep: okReport(1000)},
		}, []upload{{path: "proxy", code: 200}}, nil},
		{"5xx and transport errors", []result{
			{kind: kindLoad, stack: stackNginxAuth, c: 64, rep: &loadreport.Report{Requests: 1000,
				Status:          loadreport.Status{OK: 990, ServerError: 7, TransportError: 3},
				TransportErrors: []loadreport.ErrorCount{{Error: "connection refused", Count: 2}, {Error: "EOF", Count: 1}, {Error: "x", Count: 0}}}},
		}, nil, []string{"nginx-auth, load run at c=64: 7 5xx, 3 transport errors (connection refused ×2; EOF ×1)"}},
		{"401 and other statuses", []result{
			{kind: kindAccuracy, stack: stackRedis, c: 64, rep: &loadreport.Report{Requests: 10,
				Status: loadreport.Status{OK: 5, Unauthorized: 2, ClientError: 2, Other: 1}}},
		}, nil, []string{"redis, accuracy run at c=64: 2 401, 2 other 4xx, 1 other statuses"}},
		{"no requests", []result{{kind: kindLoad, stack: stackFloor, c: 1, rep: &loadreport.Report{}}},
			nil, []string{"floor, load run at c=1: no requests"}},
		{"missing headers on a tierlimit stack", []result{
			{kind: kindHot, stack: stackTL, c: 1, rep: &loadreport.Report{Requests: 1000,
				Status: loadreport.Status{OK: 900, Limited: 100}, MissingLimitHeader: 21}},
		}, nil, []string{"tierlimit, hot run at c=1: 21 of 1000 200s and 429s (2.10%) without X-RateLimit-Limit, more than 2.0%"}},
		{"missing headers within the share", []result{
			{kind: kindLoad, stack: stackProxy, c: 1, rep: &loadreport.Report{Requests: 1000,
				Status: loadreport.Status{OK: 1000}, MissingLimitHeader: 20}},
		}, nil, nil},
		{"no headers where there is no tierlimit node", []result{
			{kind: kindLoad, stack: stackNginx, c: 1, rep: &loadreport.Report{Requests: 1000, Status: loadreport.Status{OK: 1000}, MissingLimitHeader: 1000}},
			{kind: kindLoad, stack: stackRedis, c: 64, rep: &loadreport.Report{Requests: 1000, Status: loadreport.Status{OK: 1000}, MissingLimitHeader: 40}},
		}, nil, nil},
		{"an upload that failed", nil, []upload{{path: "direct", code: 200}, {path: "proxy", code: 502}},
			[]string{"upload 2, proxy: status 502, want 200"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := smoke(&inputs{runs: tt.runs, uploads: tt.uploads})
			assert.Equal(t, tt.want, got, "smoke(%d runs, %d uploads)", len(tt.runs), len(tt.uploads))
		})
	}
}

func TestRunFailsSmokeChecks(t *testing.T) {
	dir := fixture(t)
	// One more run of nginx with the check: 5xx and answers without the
	// headers.
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"requests":100,"status":{"200":90,"5xx":10},"missing_limit_header":90}`), 0o644))
	runs, err := os.ReadFile(filepath.Join(dir, "runs.tsv"))
	require.NoError(t, err)
	runs = append(runs, []byte("hot\tnginx-auth\t1\tbad.json\t-\t0\n")...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "runs.tsv"), runs, 0o644))

	doc := filepath.Join(dir, "anystack.md")
	before := "intro\n" + beginMarker + "\nold\n" + endMarker + "\n"
	require.NoError(t, os.WriteFile(doc, []byte(before), 0o644))
	out := filepath.Join(dir, "results.md")
	var stderr bytes.Buffer
	err = run([]string{"-runs", filepath.Join(dir, "runs.tsv"), "-upload", filepath.Join(dir, "upload.tsv"),
		"-meta", filepath.Join(dir, "meta.txt"), "-out", out, "-doc", doc}, &stderr)
	require.Error(t, err, "run with a failing run")
	assert.ErrorContains(t, err, "nginx-auth, hot run at c=1: 10 5xx, 90 of 90 200s and 429s (100.00%) without X-RateLimit-Limit")

	res, err := os.ReadFile(out)
	require.NoError(t, err, "results written even so")
	assert.Contains(t, string(res), "**Failed:**\n\n- nginx-auth, hot run at c=1: 10 5xx")
	after, err := os.ReadFile(doc)
	require.NoError(t, err)
	assert.Equal(t, before, string(after), "the doc after failed smoke checks")
	assert.NotContains(t, string(res), "**Passed**", "results of failed smoke checks")
}
