package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
	"github.com/tierlimit/tierlimit/config"
)

// emulator stands in for a cluster of nodes: one shared count per key
// (however many servers front it), admitting a key's first limit requests
// and refusing the rest, with the headers of the contract. extra lets a
// test make it over-admit. It is safe for concurrent use.
type emulator struct {
	tiers *config.Tiers
	extra int

	// mu guards hits.
	mu   sync.Mutex
	hits map[string]int
}

// newEmulator returns an emulator for the tiers file at path, read by the
// node's own loader so that the test also proves the node accepts it.
func newEmulator(t *testing.T, path string, extra int) *emulator {
	t.Helper()
	tiers, err := config.Load(path)
	require.NoError(t, err)
	return &emulator{tiers: tiers, extra: extra, hits: make(map[string]int)}
}

func (e *emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/test" {
		http.NotFound(w, r)
		return
	}
	tier, ok := e.tiers.Lookup(r.Header.Get("X-API-Key"))
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	limit := tier.LimitFor(false)
	e.mu.Lock()
	used := e.hits[r.Header.Get("X-API-Key")]
	allowed := used < limit+e.extra
	if allowed {
		used++
		e.hits[r.Header.Get("X-API-Key")] = used
	}
	e.mu.Unlock()
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(max(0, limit-used)))
	if !allowed {
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// startServers starts n loopback servers in front of h and returns their
// URLs, comma-separated.
func startServers(t *testing.T, n int, h http.Handler) string {
	t.Helper()
	var urls []string
	for range n {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	return strings.Join(urls, ",")
}

// genTiers writes, through loadgen's own -gen-config, a copy of the shipped
// tiers file with n fresh keys per tier, and returns its path.
func genTiers(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiers.json")
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"-config", "../../config/tiers.json", "-gen-config", path, "-gen-keys", strconv.Itoa(n)}, &stdout, &bytes.Buffer{})
	require.NoError(t, err)
	require.Contains(t, stdout.String(), "wrote "+path)
	return path
}

// runJSON runs loadgen with args plus -json -quiet and decodes the report.
func runJSON(t *testing.T, args ...string) (*loadreport.Report, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append(args, "-json", "-quiet"), &stdout, &stderr)
	if stdout.Len() == 0 {
		return nil, err
	}
	var rep loadreport.Report
	dec := json.NewDecoder(&stdout)
	require.NoError(t, dec.Decode(&rep), "stdout must be one JSON object")
	assert.False(t, dec.More(), "stdout holds more than one JSON object")
	return &rep, err
}

func TestRunExactCountsAgainstEmulator(t *testing.T) {
	path := genTiers(t, 10)
	targets := startServers(t, 2, newEmulator(t, path, 0))

	// 1000 requests, half free (limit 20), half pro (limit 150), each tier
	// over 2 accuracy + 3 load keys: every key gets exactly 100 requests.
	rep, err := runJSON(t, "-config", path, "-targets", targets, "-n", "1000", "-c", "8",
		"-mix", "free=50,pro=50", "-keys", "6", "-accuracy-keys", "2")
	require.NoError(t, err)

	assert.Equal(t, uint64(1000), rep.Requests)
	assert.Equal(t, loadreport.Status{OK: 5*20 + 500, Limited: 5 * 80}, rep.Status)
	assert.Equal(t, uint64(1000), rep.Latency.Count)
	require.Len(t, rep.Latency.Distribution, len(distributionPercentiles))
	for i, q := range rep.Latency.Distribution {
		assert.Equal(t, distributionPercentiles[i], q.Percentile, "distribution[%d]", i)
		if i > 0 {
			assert.GreaterOrEqual(t, q.Value, rep.Latency.Distribution[i-1].Value, "distribution[%d] at %g", i, q.Percentile)
		}
		assert.LessOrEqual(t, q.Value, rep.Latency.Max, "distribution[%d] at %g", i, q.Percentile)
	}
	assert.Zero(t, rep.MissingLimitHeader)
	assert.Empty(t, rep.Failures)

	require.Len(t, rep.PerTarget, 2)
	for _, tr := range rep.PerTarget {
		assert.Equal(t, uint64(500), tr.Requests, "target %s", tr.Target)
	}
	assert.Equal(t, []loadreport.Tier{
		{Tier: "free", Requests: 500, OK: 100, Limited: 400},
		{Tier: "pro", Requests: 500, OK: 500},
	}, rep.PerTier)

	require.NotNil(t, rep.Accuracy)
	assert.Equal(t, 1, rep.Accuracy.Windows)
	require.Len(t, rep.Accuracy.Tiers, 2)
	free, pro := rep.Accuracy.Tiers[0], rep.Accuracy.Tiers[1]

	assert.Equal(t, "free", free.Tier)
	assert.Equal(t, []int{20}, free.Limits)
	assert.Equal(t, 20, free.Bound)
	assert.Equal(t, [3]float64{20, 20, 20}, [3]float64{float64(free.AdmittedMin), free.AdmittedAvg, float64(free.AdmittedMax)})
	assert.Zero(t, free.OverPercent)
	assert.Zero(t, free.UnderPercent)
	assert.Zero(t, free.Unsaturated)
	assert.Zero(t, free.Stale)
	for _, k := range free.Details {
		assert.True(t, strings.HasPrefix(k.Key, "lg-free-"), "accuracy key %s is not a generated one", k.Key)
		assert.Equal(t, loadreport.KeyAccuracy{Key: k.Key, Sent: 100, Admitted: 20, Limited: 80, Limits: []int{20}, Bound: 20, Expected: 20}, k)
	}

	assert.Equal(t, "pro", pro.Tier)
	assert.Equal(t, uint64(100), pro.AdmittedMax)
	assert.Zero(t, pro.OverPercent)
	assert.Zero(t, pro.UnderPercent)
	assert.Equal(t, 2, pro.Unsaturated, "100 requests cannot test a limit of 150")
}

func TestRunReportsOverAdmission(t *testing.T) {
	path := genTiers(t, 2)
	targets := startServers(t, 1, newEmulator(t, path, 5)) // admits 25 where 20 is the limit

	rep, err := runJSON(t, "-config", path, "-targets", targets, "-n", "200", "-c", "4",
		"-mix", "free=100", "-accuracy-keys", "2", "-max-over-admission", "10")
	require.ErrorIs(t, err, errFailed)
	require.NotNil(t, rep)

	require.Len(t, rep.Accuracy.Tiers, 1)
	assert.Equal(t, 25.0, rep.Accuracy.Tiers[0].OverPercent, "25 admitted for a limit of 20")
	assert.Equal(t, []string{"tier free over-admitted 25.00%, more than -max-over-admission 10"}, rep.Failures)

	_, err = runJSON(t, "-config", path, "-targets", targets, "-n", "10", "-mix", "free=100",
		"-accuracy-keys", "1", "-max-over-admission", "30")
	assert.NoError(t, err, "25% is within a 30% allowance")
}

func TestRunFailOn5xxAndTransportErrors(t *testing.T) {
	var calls atomic.Int64
	failing := startServers(t, 1, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-RateLimit-Limit", "20")
	}))
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // connections to it are refused

	rep, err := runJSON(t, "-targets", failing+","+closed.URL, "-n", "40", "-c", "1", "-config", "../../config/tiers.json")
	require.NoError(t, err, "without -fail-on-5xx errors are only reported")
	assert.Equal(t, loadreport.Status{OK: 10, ServerError: 10, TransportError: 20}, rep.Status)
	require.NotEmpty(t, rep.TransportErrors)
	assert.Contains(t, rep.TransportErrors[0].Error, "refused")

	rep, err = runJSON(t, "-targets", failing+","+closed.URL, "-n", "4", "-c", "1", "-fail-on-5xx", "-config", "../../config/tiers.json")
	require.ErrorIs(t, err, errFailed)
	assert.Equal(t, []string{"1 5xx responses and 2 transport errors (-fail-on-5xx)"}, rep.Failures)
}

func TestRunUnknownKeysGet401(t *testing.T) {
	path := genTiers(t, 2)
	// The servers know only the shipped keys, not the generated ones, and
	// with 2 generated keys per tier the run uses only those.
	targets := startServers(t, 1, newEmulator(t, "../../config/tiers.json", 0))

	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-config", path, "-targets", targets, "-n", "30", "-mix", "pro=100",
		"-keys", "1", "-accuracy-keys", "1", "-quiet"}, &stdout, &stderr)
	require.NoError(t, err)
	out := stdout.String()
	assert.Contains(t, out, "401: 30")
	assert.Contains(t, out, "warning: 30 requests got 401")
}

func TestRunDurationRateAndTextReport(t *testing.T) {
	targets := startServers(t, 1, newEmulator(t, "../../config/tiers.json", 0))
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-targets", targets, "-d", "1100ms", "-rate", "40", "-c", "4",
		"-config", "../../config/tiers.json", "-accuracy-keys", "1", "-mix", "free=100"}, &stdout, &stderr)
	require.NoError(t, err)

	// Requests are due at i/40 s for i/40 < 1.1: 44 of them at most. How
	// many a busy machine sends in that time is not for this test to say;
	// TestLoaderRateAndDuration counts them exactly, on a fake clock.
	var n int
	for line := range strings.Lines(stdout.String()) {
		if rest, ok := strings.CutPrefix(line, "requests"); ok {
			n, _ = strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	assert.LessOrEqual(t, n, 44, "requests in the text report")
	assert.Positive(t, n, "requests in the text report")
	for _, want := range []string{"latency", "p99.9", "target", "tier", "accuracy", "windows = max(1, ceil("} {
		assert.Contains(t, stdout.String(), want)
	}
	// Without -quiet the run is announced on stderr; the progress lines
	// that follow each second are TestLoaderProgress's.
	assert.Contains(t, stderr.String(), "loadgen: 1.1s at 40 req/s to "+targets+", 4 workers")
}

// TestRunInterruptedCancelsInFlight interrupts a run once both workers'
// requests hang at the server: both count as canceled, neither as a
// transport error. It waits for both to arrive, however long a busy
// machine takes to send them; -d and -timeout, a minute each (not the
// 2 s default, which a busy machine can exceed), are the deadline.
func TestRunInterruptedCancelsInFlight(t *testing.T) {
	const workers = 2
	arrived := make(chan struct{}, workers)
	targets := startServers(t, 1, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done() // hang until the client gives up
	}))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for range workers {
			select {
			case <-arrived:
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	var stdout bytes.Buffer
	err := run(ctx, []string{"-targets", targets, "-d", "1m", "-timeout", "1m", "-c", strconv.Itoa(workers), "-json", "-quiet",
		"-config", "../../config/tiers.json"}, &stdout, &bytes.Buffer{})
	require.ErrorIs(t, err, errInterrupted, "run ended before both workers' requests reached the server")
	var rep loadreport.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep))
	assert.True(t, rep.Interrupted)
	assert.Contains(t, stdout.String(), `"distribution":[]`, "no response, no distribution, but a list")
	assert.Equal(t, uint64(2), rep.Status.Canceled, "both workers' requests were in flight")
	assert.Zero(t, rep.Status.TransportError)
}

func TestRunHelpAndUsageErrors(t *testing.T) {
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"-h"}, &bytes.Buffer{}, &stderr)
	assert.ErrorIs(t, err, flag.ErrHelp)
	for _, want := range []string{"-gen-config", "-accuracy-keys", "windows = max(1, ceil(elapsed / window_seconds))", "-fail-on-5xx", "Exit status"} {
		assert.Contains(t, stderr.String(), want)
	}

	err = run(t.Context(), []string{"-targets", "http://127.0.0.1:1"}, &bytes.Buffer{}, &bytes.Buffer{})
	var ue *usageError
	assert.True(t, errors.As(err, &ue), "run without -n or -d = %v, want a usage error", err)
}
