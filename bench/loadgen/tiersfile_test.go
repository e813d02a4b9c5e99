package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadShippedTiers(t *testing.T) {
	tf, err := loadTiersFile("../../config/tiers.json")
	require.NoError(t, err)
	assert.Equal(t, 60, tf.WindowSeconds)
	assert.Equal(t, []string{"enterprise", "free", "pro"}, tf.tierNames())
	free, ok := tf.tier("free")
	require.True(t, ok)
	assert.Equal(t, tierSpec{Limit: 10, Burst: 20, Degraded: 2}, free)
	assert.Equal(t, []string{"free-demo-1", "free-demo-2", "free-demo-3"}, tf.keysOf("free"))
	assert.Equal(t, []string{"ent-demo-1", "ent-demo-2", "ent-demo-3"}, tf.keysOf("enterprise"))
}

func TestLoadTiersFileMissing(t *testing.T) {
	_, err := loadTiersFile("testdata/does-not-exist.json")
	assert.ErrorContains(t, err, "read tiers: open testdata/does-not-exist.json")
}

func TestParseTiersFile(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string
	}{
		{name: "minimal", in: `{"window_seconds":1,"tiers":{"t":{"limit":1}}}`},
		{name: "unknown field", in: `{"window_seconds":1,"tiers":{"t":{"limit":1}},"x":1}`, wantErr: `parse: json: unknown field "x"`},
		{name: "cost and concurrency", in: `{"window_seconds":1,"cost_unit":"s","tiers":{"t":{"limit":1,"cost":{"limit":5,"default_estimate":2},"concurrency":{"limit":1}}}}`},
		{name: "unknown cost field", in: `{"window_seconds":1,"tiers":{"t":{"limit":1,"cost":{"limit":5,"estimate":2}}}}`, wantErr: `parse: json: unknown field "estimate"`},
		{name: "trailing data", in: `{"window_seconds":1,"tiers":{"t":{"limit":1}}} {}`, wantErr: "parse: unexpected data after the top-level object"},
		{name: "no window", in: `{"tiers":{"t":{"limit":1}}}`, wantErr: "window_seconds: 0, want > 0"},
		{name: "no tiers", in: `{"window_seconds":1}`, wantErr: "tiers: missing or empty"},
		{name: "zero limit", in: `{"window_seconds":1,"tiers":{"t":{"burst":3}}}`, wantErr: "tiers.t.limit: 0, want > 0"},
		{name: "unknown tier", in: `{"window_seconds":1,"tiers":{"t":{"limit":1}},"api_keys":{"k":"gold"}}`, wantErr: `api_keys["k"]: unknown tier "gold"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTiersFile([]byte(tt.in))
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestTierDefaults(t *testing.T) {
	tf := tiersFile{Tiers: map[string]tierSpec{"t": {Limit: 10}}}
	got, ok := tf.tier("t")
	require.True(t, ok)
	assert.Equal(t, tierSpec{Limit: 10, Burst: 10, Degraded: 10}, got)
	_, ok = tf.tier("u")
	assert.False(t, ok)
}

func TestKeysOfGeneratedFirstInNaturalOrder(t *testing.T) {
	tf := tiersFile{APIKeys: map[string]string{
		"free-demo-10": "free", "free-demo-2": "free", "free-demo-1": "free",
		"lg-free-ab-10": "free", "lg-free-ab-2": "free", "lg-free-ab-1": "free",
		"pro-demo-1": "pro",
	}}
	assert.Equal(t, []string{
		"lg-free-ab-1", "lg-free-ab-2", "lg-free-ab-10",
		"free-demo-1", "free-demo-2", "free-demo-10",
	}, tf.keysOf("free"))
	assert.Empty(t, tf.keysOf("enterprise"))
}

func TestNaturalCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"a2", "a10", -1},
		{"a10", "a2", 1},
		{"a", "a", 0},
		{"a01", "a1", -1},
		{"a", "ab", -1},
		{"k-2-x", "k-2-y", -1},
		{"", "a", -1},
		{"x9y", "x10", -1},
		{"b", "a99", 1},
	}
	for _, tt := range tests {
		got := naturalCompare(tt.a, tt.b)
		assert.Equal(t, tt.want, sign(got), "naturalCompare(%q, %q) = %d", tt.a, tt.b, got)
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
