package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shippedTiers returns the repository's config/tiers.json.
func shippedTiers(t *testing.T) tiersFile {
	t.Helper()
	tf, err := loadTiersFile("../../config/tiers.json")
	require.NoError(t, err)
	return tf
}

func mustMix(t *testing.T, s string) []mixEntry {
	t.Helper()
	m, err := parseMix(s)
	require.NoError(t, err)
	return m
}

func TestPlanPicks(t *testing.T) {
	tf := shippedTiers(t)
	p, err := newPlan(tf, tf, mustMix(t, "free=50,pro=50,enterprise=0"), 0, 1)
	require.NoError(t, err)
	assert.Equal(t, []string{"free", "pro"}, p.tierNames())
	assert.Equal(t, []accuracyKey{{key: "free-demo-1", tier: 0}, {key: "pro-demo-1", tier: 1}}, p.accuracy)
	assert.Equal(t, time.Minute, p.window)
	assert.Equal(t, tierSpec{Limit: 10, Burst: 20, Degraded: 2}, p.tiers[0].limits)

	tests := []struct {
		i    uint64
		want pick
	}{
		{0, pick{tier: 0, key: "free-demo-1", accuracy: 0, target: 0}},
		{1, pick{tier: 1, key: "pro-demo-1", accuracy: 1, target: 3}},
		{2, pick{tier: 0, key: "free-demo-2", accuracy: -1, target: 1}},
		{3, pick{tier: 1, key: "pro-demo-2", accuracy: -1, target: 4}},
		{4, pick{tier: 0, key: "free-demo-3", accuracy: -1, target: 2}},
		{6, pick{tier: 0, key: "free-demo-1", accuracy: 0, target: 1}}, // second round: next target
		{7, pick{tier: 1, key: "pro-demo-1", accuracy: 1, target: 4}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, p.pick(tt.i), "pick(%d)", tt.i)
	}
}

func TestPlanSpreadsEvenly(t *testing.T) {
	tf := shippedTiers(t)
	p, err := newPlan(tf, tf, mustMix(t, defaultMix), 0, 0)
	require.NoError(t, err)
	// One cycle is 20 requests (14 free, 5 pro, 1 enterprise); 3 keys per
	// tier and 2 targets: 120 cycles give each key an even count.
	const targets = 2
	perKey := make(map[string]int)
	perKeyTarget := make(map[string][targets]int)
	perTier := make([]int, len(p.tiers))
	for i := range uint64(20 * 6 * 20) {
		pk := p.pick(i)
		perKey[pk.key]++
		kt := perKeyTarget[pk.key]
		kt[pk.target%targets]++
		perKeyTarget[pk.key] = kt
		perTier[pk.tier]++
	}
	assert.Equal(t, []int{1680, 600, 120}, perTier, "70/25/5 of 2400")
	for key, n := range perKey {
		want := map[string]int{"free": 560, "pro": 200, "ent": 40}[key[:len(key)-len("-demo-1")]]
		assert.Equal(t, want, n, "requests of %s", key)
		assert.Equal(t, [targets]int{want / 2, want / 2}, perKeyTarget[key], "targets of %s", key)
	}
}

func TestPlanKeyCounts(t *testing.T) {
	tf := shippedTiers(t)
	p, err := newPlan(tf, tf, mustMix(t, "free=50,pro=50"), 3, 1)
	require.NoError(t, err)
	// -keys 3 at 50/50 splits 2/1; each tier adds its accuracy key first.
	assert.Equal(t, []string{"free-demo-1", "free-demo-2", "free-demo-3"}, p.tiers[0].keys)
	assert.Equal(t, []string{"pro-demo-1", "pro-demo-2"}, p.tiers[1].keys)
	assert.Equal(t, 3, p.tiers[1].keyBase)
	assert.Equal(t, 1, p.tiers[1].firstAccuracy)
}

func TestPlanErrors(t *testing.T) {
	tf := shippedTiers(t)
	tests := []struct {
		name          string
		mix           string
		keys, accKeys int
		wantErr       string
	}{
		{name: "unknown tier", mix: "gold=100", wantErr: `mix: tier "gold" is not in the config (tiers: enterprise, free, pro)`},
		{name: "too many keys", mix: "free=100", keys: 10, wantErr: `tier "free": need 10 keys (0 accuracy + 10 load), the keys file has 3; write a config with more keys using -gen-config`},
		{name: "too many accuracy keys", mix: "pro=100", accKeys: 4, wantErr: `tier "pro": need 4 keys (4 accuracy + 0 load), the keys file has 3; write a config with more keys using -gen-config`},
		{name: "fewer keys than tiers", mix: defaultMix, keys: 2, wantErr: "-keys 2 is fewer than the 3 tiers in the mix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newPlan(tf, tf, mustMix(t, tt.mix), tt.keys, tt.accKeys)
			assert.EqualError(t, err, tt.wantErr)
		})
	}

	noKeys := tiersFile{WindowSeconds: 60, Tiers: tf.Tiers}
	_, err := newPlan(tf, noKeys, mustMix(t, "free=100"), 0, 0)
	assert.EqualError(t, err, `tier "free": need 1 keys (0 accuracy + 1 load), the keys file has 0; write a config with more keys using -gen-config`)
}

func TestPlanKeysFromAnotherFile(t *testing.T) {
	cfg := shippedTiers(t)
	keys := tiersFile{WindowSeconds: 1, Tiers: cfg.Tiers, APIKeys: map[string]string{"x-2": "pro", "x-1": "pro"}}
	p, err := newPlan(cfg, keys, mustMix(t, "pro=100"), 0, 1)
	require.NoError(t, err)
	assert.Equal(t, []string{"x-1", "x-2"}, p.tiers[0].keys)
	assert.Equal(t, time.Minute, p.window, "the window comes from -config")
}
