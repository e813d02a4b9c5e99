package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

func TestNewReport(t *testing.T) {
	tf := shippedTiers(t)
	p, err := newPlan(tf, tf, mustMix(t, "free=50,pro=50"), 0, 1)
	require.NoError(t, err)
	s := newStats(2, 2)
	for range 3 {
		s.record(result{tier: 0, accuracy: 0, target: "http://b", outcome: outcomeOK, latency: time.Millisecond, limit: 20, remaining: 19})
	}
	s.record(result{tier: 1, accuracy: -1, target: "http://a", outcome: outcomeLimited, latency: 3 * time.Millisecond, limit: 150, remaining: 0})
	s.record(result{tier: 1, accuracy: -1, target: "http://a", outcome: outcomeTransport, limit: -1, remaining: -1, err: "refused"})
	s.record(result{tier: 1, accuracy: -1, target: "http://a", outcome: outcomeTransport, limit: -1, remaining: -1, err: "refused"})
	s.record(result{tier: 1, accuracy: -1, target: "http://a", outcome: outcomeTransport, limit: -1, remaining: -1, err: "reset"})

	r := newReport(p, s, 2*time.Second, []string{"http://a", "http://b"}, 4)
	assert.Equal(t, uint64(7), r.Requests)
	assert.Equal(t, 3.5, r.RequestsPerSecond)
	assert.Equal(t, loadreport.Status{OK: 3, Limited: 1, TransportError: 3}, r.Status)
	// Latencies 1, 1, 1 and 3 ms: HdrHistogram's rank round(p × 4) is the
	// fourth value from p = 87.5.
	var dist []loadreport.Quantile
	for _, p := range distributionPercentiles {
		us := 3000.0
		if p < 87.5 {
			us = 1000.447 // the top of 1 ms's bucket
		}
		dist = append(dist, loadreport.Quantile{Percentile: p, Value: us})
	}
	assert.Equal(t, loadreport.Latency{Count: 4, Mean: 1500, P50: 1000.447, P90: 3000, P99: 3000, P999: 3000, Max: 3000, Distribution: dist}, r.Latency)
	assert.Equal(t, []loadreport.Target{
		{Target: "http://a", Requests: 4, Limited: 1, Errors: 3},
		{Target: "http://b", Requests: 3, OK: 3},
	}, r.PerTarget)
	assert.Equal(t, []loadreport.Tier{
		{Tier: "free", Requests: 3, OK: 3},
		{Tier: "pro", Requests: 4, Limited: 1, Errors: 3},
	}, r.PerTier)
	assert.Equal(t, []loadreport.ErrorCount{{Error: "refused", Count: 2}, {Error: "reset", Count: 1}}, r.TransportErrors)
	require.NotNil(t, r.Accuracy)
	assert.Equal(t, []string{
		"tier free: 1 accuracy keys got no more decided requests than their bound, so over-admission could not show on them: send more requests or use fewer keys",
	}, warnings(r))
}

func TestReportFailures(t *testing.T) {
	over := &loadreport.Accuracy{Tiers: []loadreport.TierAccuracy{{Tier: "free", OverPercent: 12.5}, {Tier: "pro", OverPercent: 1}}}
	tests := []struct {
		name      string
		r         loadreport.Report
		failOn5xx bool
		maxOver   float64
		want      []string
	}{
		{name: "clean", r: loadreport.Report{Status: loadreport.Status{OK: 5}}, failOn5xx: true, maxOver: 0},
		{name: "errors reported only", r: loadreport.Report{Status: loadreport.Status{ServerError: 1}}, maxOver: -1},
		{
			name: "5xx", r: loadreport.Report{Status: loadreport.Status{ServerError: 2, TransportError: 1}}, failOn5xx: true, maxOver: -1,
			want: []string{"2 5xx responses and 1 transport errors (-fail-on-5xx)"},
		},
		{
			name: "over", r: loadreport.Report{Accuracy: over}, maxOver: 10,
			want: []string{"tier free over-admitted 12.50%, more than -max-over-admission 10"},
		},
		{name: "over within allowance", r: loadreport.Report{Accuracy: over}, maxOver: 12.5},
		{name: "over check off", r: loadreport.Report{Accuracy: over}, maxOver: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, failures(&tt.r, tt.failOn5xx, tt.maxOver))
		})
	}
}

func TestReportWarnings(t *testing.T) {
	r := loadreport.Report{
		Status:             loadreport.Status{Unauthorized: 3},
		MissingLimitHeader: 2,
		Accuracy: &loadreport.Accuracy{Windows: 2, Tiers: []loadreport.TierAccuracy{
			{Tier: "free", Stale: 1, Limits: []int{2, 20}, LimitChanged: true},
		}},
	}
	assert.Equal(t, []string{
		"3 requests got 401: the nodes do not know those keys; start them with the config the keys came from (see -gen-config)",
		"2 responses (200 or 429) had no numeric X-RateLimit-Limit",
		"tier free: 1 accuracy keys look used before the run (X-RateLimit-Remaining never reached limit-1): generate fresh keys with -gen-config",
		"tier free: the limit changed during the run (2,20)",
		"the run spanned 2 windows: accuracy bounds are the limit × 2",
	}, warnings(&r))
}

func TestWriteText(t *testing.T) {
	r := loadreport.Report{
		Concurrency: 8, ElapsedSeconds: 2.5, Requests: 1000, RequestsPerSecond: 400,
		Status:    loadreport.Status{OK: 600, Limited: 400},
		Latency:   loadreport.Latency{Count: 1000, Mean: 812.4, P50: 700.2, P90: 1234.6, P99: 2000, P999: 3000, Max: 4100},
		PerTarget: []loadreport.Target{{Target: "http://127.0.0.1:8080", Requests: 500, OK: 300, Limited: 200}, {Target: "http://127.0.0.1:8081", Requests: 500, OK: 300, Limited: 200}},
		PerTier:   []loadreport.Tier{{Tier: "free", Requests: 500, OK: 100, Limited: 400}, {Tier: "pro", Requests: 500, OK: 500}},
		Accuracy: &loadreport.Accuracy{WindowSeconds: 60, ElapsedSeconds: 2.5, Windows: 1, Formula: accuracyFormula, Tiers: []loadreport.TierAccuracy{
			{Tier: "free", Keys: 2, Limits: []int{20}, Bound: 20, AdmittedMin: 20, AdmittedAvg: 20, AdmittedMax: 20, SentAvg: 100},
		}},
		Failures: []string{"something"},
	}
	var buf bytes.Buffer
	require.NoError(t, writeText(&buf, &r))
	assert.Equal(t, `requests  1000 in 2.500s = 400.0 req/s, 8 workers, 2 targets
status    200: 600  401: 0  429: 400  other 4xx: 0  5xx: 0  other: 0  transport errors: 0
latency   p50 700µs  p90 1.235ms  p99 2ms  p99.9 3ms  max 4.1ms  mean 812µs  (1000 responses)

target                 requests  share  200  429  errors
http://127.0.0.1:8080  500       50.0%  300  200  0
http://127.0.0.1:8081  500       50.0%  300  200  0

tier  requests  share  200  429  errors
free  500       50.0%  100  400  0
pro   500       50.0%  500  0    0

accuracy  keys  limit  bound  admitted min/avg/max  sent avg  over %  under %  undecided
free      2     20     20     20 / 20.0 / 20        100.0     0.00    0.00     0
(accuracy assumes fresh keys; windows = max(1, ceil(2.5s / 60s)) = 1;
 bound = max X-RateLimit-Limit seen × windows, windows = max(1, ceil(elapsed / window));
 over-admission = Σ max(0, admitted − bound) / Σ bound;
 under-admission = Σ max(0, min(decided, min limit seen) − admitted) / Σ min(decided, min limit seen))
FAIL: something
`, buf.String())
}

func TestFmtMicros(t *testing.T) {
	tests := map[float64]string{0: "0s", 0.4: "0s", 812.3: "812µs", 1234.6: "1.235ms", 2_500_000: "2.5s"}
	for us, want := range tests {
		assert.Equal(t, want, fmtMicros(us), "fmtMicros(%g)", us)
	}
}
