package loadreport

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oldReport is a report as loadgen wrote it before the latency
// distribution, cut short.
const oldReport = `{"targets":["http://127.0.0.1:23411"],"concurrency":64,"elapsed_seconds":10.01,
"requests":137990,"requests_per_second":13786.2,
"status":{"200":137990,"401":0,"429":0,"other_4xx":0,"5xx":0,"other_status":0,"transport_error":0,"canceled":0},
"latency":{"count":137990,"mean_us":4590.1,"p50_us":4220.5,"p90_us":7300,"p99_us":12270.6,"p99_9_us":16000.2,"max_us":25000},
"per_target":[{"target":"http://127.0.0.1:23411","requests":137990,"200":137990,"429":0,"errors":0}],
"per_tier":[{"tier":"enterprise","requests":137990,"200":137990,"429":0,"errors":0}],
"missing_limit_header":0,"transport_errors":[],"interrupted":false,"failures":[]}`

func TestReadFileOldReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.json")
	require.NoError(t, os.WriteFile(path, []byte(oldReport), 0o644))
	r, err := ReadFile(path)
	require.NoError(t, err, "ReadFile(%s)", path)
	assert.Equal(t, 64, r.Concurrency)
	assert.Equal(t, 13786.2, r.RequestsPerSecond)
	assert.Equal(t, Status{OK: 137990}, r.Status)
	assert.Equal(t, Latency{Count: 137990, Mean: 4590.1, P50: 4220.5, P90: 7300, P99: 12270.6, P999: 16000.2, Max: 25000}, r.Latency,
		"an old report has no distribution")
	assert.Equal(t, []Tier{{Tier: "enterprise", Requests: 137990, OK: 137990}}, r.PerTier)
	assert.Nil(t, r.Accuracy, "a run without accuracy keys")
}

func TestReportRoundTrip(t *testing.T) {
	want := Report{
		Targets: []string{"http://a"}, Concurrency: 1, ElapsedSeconds: 2, Requests: 10, RequestsPerSecond: 5,
		Status: Status{OK: 8, Limited: 2},
		Latency: Latency{Count: 10, Mean: 100, P50: 90, P90: 150, P99: 200, P999: 200, Max: 200,
			Distribution: []Quantile{{Percentile: 50, Value: 90}, {Percentile: 99.99, Value: 200}}},
		PerTarget:       []Target{{Target: "http://a", Requests: 10, OK: 8, Limited: 2}},
		PerTier:         []Tier{{Tier: "free", Requests: 10, OK: 8, Limited: 2}},
		TransportErrors: []ErrorCount{},
		Accuracy: &Accuracy{WindowSeconds: 60, ElapsedSeconds: 2, Windows: 1, Formula: "f", Tiers: []TierAccuracy{{
			Tier: "free", Keys: 1, Limits: []int{8}, Bound: 8, AdmittedMin: 8, AdmittedAvg: 8, AdmittedMax: 8, SentAvg: 10,
			Details: []KeyAccuracy{{Key: "k", Sent: 10, Admitted: 8, Limited: 2, Limits: []int{8}, Bound: 8, Expected: 8}},
		}}},
		Failures: []string{},
	}
	data, err := json.Marshal(want)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"distribution":[{"percentile":50,"us":90},{"percentile":99.99,"us":200}]`)
	path := filepath.Join(t.TempDir(), "r.json")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	got, err := ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, want, *got)
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadFile(filepath.Join(dir, "missing.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "ReadFile of a missing file")

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"requests":"many"}`), 0o644))
	_, err = ReadFile(bad)
	assert.ErrorContains(t, err, bad, "ReadFile of a malformed report names the file")
}
