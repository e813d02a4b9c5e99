package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

func TestWindowsSpanned(t *testing.T) {
	tests := []struct {
		elapsed, window time.Duration
		want            int
	}{
		{0, time.Minute, 1},
		{59 * time.Second, time.Minute, 1},
		{time.Minute, time.Minute, 1},
		{time.Minute + 1, time.Minute, 2},
		{2 * time.Minute, time.Minute, 2},
		{121 * time.Second, time.Minute, 3},
		{time.Hour, 0, 1},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, windowsSpanned(tt.elapsed, tt.window), "windowsSpanned(%s, %s)", tt.elapsed, tt.window)
	}
}

// keyWith returns key stats with the given counts and limits seen.
func keyWith(ok, limited, failed uint64, maxRemaining int, limits ...int) keyStats {
	return keyStats{
		outcomes:     counts{outcomeOK: ok, outcomeLimited: limited, outcomeTransport: failed},
		limits:       limits,
		maxRemaining: maxRemaining,
	}
}

func TestJudgeKey(t *testing.T) {
	tests := []struct {
		name    string
		k       keyStats
		windows int
		want    loadreport.KeyAccuracy
	}{
		{
			name: "exact", k: keyWith(20, 80, 0, 19, 20), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 100, Admitted: 20, Limited: 80, Limits: []int{20}, Bound: 20, Expected: 20},
		},
		{
			name: "over", k: keyWith(25, 75, 0, 19, 20), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 100, Admitted: 25, Limited: 75, Limits: []int{20}, Bound: 20, Expected: 20, OverPercent: 25},
		},
		{
			name: "under", k: keyWith(15, 85, 0, 19, 20), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 100, Admitted: 15, Limited: 85, Limits: []int{20}, Bound: 20, Expected: 20, UnderPercent: 25},
		},
		{
			name: "unsaturated", k: keyWith(10, 0, 0, 19, 20), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 10, Admitted: 10, Limits: []int{20}, Bound: 20, Expected: 10},
		},
		{
			name: "refused too early", k: keyWith(8, 2, 0, 19, 20), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 10, Admitted: 8, Limited: 2, Limits: []int{20}, Bound: 20, Expected: 10, UnderPercent: 20},
		},
		{
			name: "two windows", k: keyWith(45, 155, 0, 19, 20), windows: 2,
			want: loadreport.KeyAccuracy{Sent: 200, Admitted: 45, Limited: 155, Limits: []int{20}, Bound: 40, Expected: 20, OverPercent: 12.5},
		},
		{
			name: "limit changed: loosest for over, strictest for under", k: keyWith(5, 95, 0, 19, 20, 2), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 100, Admitted: 5, Limited: 95, Limits: []int{2, 20}, Bound: 20, Expected: 2},
		},
		{
			// A key used before the run looks under-admitted; Stale says why.
			name: "stale", k: keyWith(10, 90, 0, 9, 20), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 100, Admitted: 10, Limited: 90, Limits: []int{20}, Bound: 20, Expected: 20, UnderPercent: 50, Stale: true},
		},
		{
			name: "undecided hides staleness", k: keyWith(20, 80, 3, 18, 20), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 103, Admitted: 20, Limited: 80, Undecided: 3, Limits: []int{20}, Bound: 20, Expected: 20},
		},
		{
			name: "no decision", k: keyWith(0, 0, 4, -1), windows: 1,
			want: loadreport.KeyAccuracy{Sent: 4, Undecided: 4, Limits: []int{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Key = "k"
			got := judgeKey("k", &tt.k, tt.windows)
			if len(got.Limits) == 0 {
				got.Limits = []int{}
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestComputeAccuracy(t *testing.T) {
	cfg := tiersFile{
		WindowSeconds: 60,
		Tiers:         map[string]tierSpec{"free": {Limit: 20}, "pro": {Limit: 150}},
		APIKeys:       map[string]string{},
	}
	for i := 1; i <= 3; i++ {
		cfg.APIKeys[fmt.Sprint("f", i)] = "free"
		cfg.APIKeys[fmt.Sprint("p", i)] = "pro"
	}
	p, err := newPlan(cfg, cfg, mustMix(t, "free=50,pro=50"), 0, 2)
	require.NoError(t, err)
	s := newStats(2, 4)
	s.keys[0] = keyWith(20, 80, 0, 19, 20)   // f1: exact
	s.keys[1] = keyWith(30, 70, 1, 19, 20)   // f2: 10 over
	s.keys[2] = keyWith(100, 0, 0, 149, 150) // p1: unsaturated
	s.keys[3] = keyWith(90, 10, 0, 149, 150) // p2: 10 short

	rep := computeAccuracy(p, s, 30*time.Second)
	require.NotNil(t, rep)
	assert.Equal(t, 1, rep.Windows)
	assert.Equal(t, 60.0, rep.WindowSeconds)
	assert.Equal(t, 30.0, rep.ElapsedSeconds)
	assert.Equal(t, accuracyFormula, rep.Formula)
	require.Len(t, rep.Tiers, 2)

	free := rep.Tiers[0]
	free.Details = nil
	assert.Equal(t, loadreport.TierAccuracy{
		Tier: "free", Keys: 2, Limits: []int{20}, Bound: 20,
		AdmittedMin: 20, AdmittedAvg: 25, AdmittedMax: 30, SentAvg: 100.5,
		OverPercent: 25, UnderPercent: 0, Undecided: 1,
	}, free)

	pro := rep.Tiers[1]
	assert.Equal(t, []string{"p1", "p2"}, []string{pro.Details[0].Key, pro.Details[1].Key})
	pro.Details = nil
	assert.Equal(t, loadreport.TierAccuracy{
		Tier: "pro", Keys: 2, Limits: []int{150}, Bound: 150,
		AdmittedMin: 90, AdmittedAvg: 95, AdmittedMax: 100, SentAvg: 100,
		OverPercent: 0, UnderPercent: 5, Unsaturated: 2,
	}, pro)

	tier, over := worstOver(rep)
	assert.Equal(t, "free", tier)
	assert.Equal(t, 25.0, over)
	assert.Equal(t, "windows = max(1, ceil(30.0s / 60s)) = 1", accuracySummary(rep))

	p0, err := newPlan(cfg, cfg, mustMix(t, "free=100"), 0, 0)
	require.NoError(t, err)
	var none *loadreport.Accuracy = computeAccuracy(p0, newStats(1, 0), time.Second)
	assert.Nil(t, none)
	tier, over = worstOver(none)
	assert.Equal(t, "", tier)
	assert.Zero(t, over)
}

func TestPercent(t *testing.T) {
	assert.Equal(t, 33.33, percent(1, 3))
	assert.Equal(t, 66.67, percent(2, 3))
	assert.Equal(t, 0.0, percent(1, 0))
	assert.Equal(t, 250.0, percent(5, 2))
}
