// Package loadreport holds the report bench/loadgen prints with -json: one
// run's throughput, latency (quantiles and a percentile distribution),
// counts by outcome, target and tier, and, for a run with accuracy keys,
// how often each key was admitted against its limit. bench/loadgen fills it
// in; bench/report and the latency plots read it, so a report is defined
// once.
//
// It is plain data: JSON field names are stable, a field added later is
// absent (zero) when an older report is read, and the package imports
// nothing but the standard library, so another module can read reports
// without taking loadgen's dependencies. How a figure is computed (the
// histogram, the accuracy rules) is loadgen's; `loadgen -h` explains it.
package loadreport

import (
	"encoding/json"
	"fmt"
	"os"
)

// Report is the result of one loadgen run.
type Report struct {
	// Targets are the base URLs the run started with.
	Targets     []string `json:"targets"`
	Concurrency int      `json:"concurrency"`
	// ElapsedSeconds is how long the run took.
	ElapsedSeconds    float64 `json:"elapsed_seconds"`
	Requests          uint64  `json:"requests"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	Status            Status  `json:"status"`
	Latency           Latency `json:"latency"`
	// PerTarget is sorted by target; PerTier in the order of loadgen's
	// -mix.
	PerTarget []Target `json:"per_target"`
	PerTier   []Tier   `json:"per_tier"`
	// MissingLimitHeader counts 200 and 429 responses without a numeric
	// X-RateLimit-Limit.
	MissingLimitHeader uint64 `json:"missing_limit_header"`
	// TransportErrors are the distinct transport errors, most frequent
	// first.
	TransportErrors []ErrorCount `json:"transport_errors"`
	// Accuracy is nil for a run without accuracy keys.
	Accuracy *Accuracy `json:"accuracy,omitempty"`
	// Interrupted reports whether the run was cut short; the figures cover
	// it until then.
	Interrupted bool `json:"interrupted"`
	// Failures lists why the run exits 1; empty when it exits 0.
	Failures []string `json:"failures"`
}

// Status counts requests by outcome.
type Status struct {
	OK             uint64 `json:"200"`
	Unauthorized   uint64 `json:"401"`
	Limited        uint64 `json:"429"`
	ClientError    uint64 `json:"other_4xx"`
	ServerError    uint64 `json:"5xx"`
	Other          uint64 `json:"other_status"`
	TransportError uint64 `json:"transport_error"`
	// Canceled counts requests in flight when the run was interrupted.
	Canceled uint64 `json:"canceled"`
}

// Errors counts the requests that were neither admitted nor refused with a
// 429: every other status, and those that got no response.
func (s Status) Errors() uint64 {
	return s.Unauthorized + s.ClientError + s.ServerError + s.Other + s.TransportError
}

// Latency sums up the latencies, in microseconds, of the requests that got
// a response, from sending the request to reading the whole body. Mean and
// Max are exact; the quantiles are the top of the histogram bucket that
// holds them, within 0.1% of the true value and never above Max.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p99_9_us"`
	Max   float64 `json:"max_us"`
	// Distribution is the latency at a fixed, log-spaced set of
	// percentiles, ascending (loadgen: 50, 80, 90, 95, 98, 99, 99.5, 99.8,
	// 99.9, 99.95, 99.98, 99.99), for plotting. It is empty when nothing
	// got a response, and absent from reports older than it.
	Distribution []Quantile `json:"distribution"`
}

// Quantile is one point of a latency distribution.
type Quantile struct {
	// Percentile is in percent, such as 99.9.
	Percentile float64 `json:"percentile"`
	// Value is the latency, in microseconds, at or below which Percentile
	// percent of the responses came back.
	Value float64 `json:"us"`
}

// Target is one target's share of the load.
type Target struct {
	Target   string `json:"target"`
	Requests uint64 `json:"requests"`
	OK       uint64 `json:"200"`
	Limited  uint64 `json:"429"`
	// Errors counts 5xx responses and transport errors.
	Errors uint64 `json:"errors"`
}

// Tier is one tier's share of the load.
type Tier struct {
	Tier     string `json:"tier"`
	Requests uint64 `json:"requests"`
	OK       uint64 `json:"200"`
	Limited  uint64 `json:"429"`
	// Errors counts 5xx responses and transport errors.
	Errors uint64 `json:"errors"`
}

// ErrorCount is a transport error message and how often it happened.
type ErrorCount struct {
	Error string `json:"error"`
	Count uint64 `json:"count"`
}

// Accuracy is the accuracy table: how the admitted counts of the accuracy
// keys compare with the limits in force. Formula states the rules.
type Accuracy struct {
	WindowSeconds  float64 `json:"window_seconds"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Windows is how many of a key's windows the run may have touched:
	// max(1, ceil(elapsed / window)).
	Windows int            `json:"windows"`
	Formula string         `json:"formula"`
	Tiers   []TierAccuracy `json:"tiers"`
}

// TierAccuracy sums up the accuracy keys of one tier.
type TierAccuracy struct {
	Tier string `json:"tier"`
	Keys int    `json:"keys"`
	// Limits are the distinct X-RateLimit-Limit values the tier's keys
	// saw, ascending; more than one means the limit changed in the run.
	Limits       []int `json:"limits"`
	LimitChanged bool  `json:"limit_changed"`
	// Bound is the largest per-key bound.
	Bound       int     `json:"bound"`
	AdmittedMin uint64  `json:"admitted_min"`
	AdmittedAvg float64 `json:"admitted_avg"`
	AdmittedMax uint64  `json:"admitted_max"`
	SentAvg     float64 `json:"sent_avg"`
	// OverPercent and UnderPercent follow Accuracy.Formula.
	OverPercent  float64 `json:"over_admission_pct"`
	UnderPercent float64 `json:"under_admission_pct"`
	Undecided    uint64  `json:"undecided"`
	// Unsaturated counts keys with no more decided requests than their
	// bound: over-admission could not show on them.
	Unsaturated int `json:"unsaturated_keys"`
	// Stale counts keys that look used before the run: their highest
	// X-RateLimit-Remaining was below limit-1.
	Stale   int           `json:"stale_keys"`
	Details []KeyAccuracy `json:"details"`
}

// KeyAccuracy is one accuracy key's line.
type KeyAccuracy struct {
	Key       string `json:"key"`
	Sent      uint64 `json:"sent"`
	Admitted  uint64 `json:"admitted"`
	Limited   uint64 `json:"limited"`
	Undecided uint64 `json:"undecided"`
	Limits    []int  `json:"limits"`
	Bound     int    `json:"bound"`
	// Expected is the least the key must have been admitted: its first
	// decided requests up to the smallest limit seen.
	Expected     uint64  `json:"expected_min"`
	OverPercent  float64 `json:"over_admission_pct"`
	UnderPercent float64 `json:"under_admission_pct"`
	Stale        bool    `json:"stale"`
}

// ReadFile reads the report that loadgen -json wrote to path.
func ReadFile(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}
