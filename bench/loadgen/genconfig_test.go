package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/config"
)

func TestGenConfigExactOutput(t *testing.T) {
	src := tiersFile{
		WindowSeconds: 60,
		Tiers:         map[string]tierSpec{"t": {Limit: 5, Degraded: 1}},
		APIKeys:       map[string]string{"k": "t"},
	}
	got, err := genConfig(src, 2, "abcd")
	require.NoError(t, err)
	assert.Equal(t, `{
  "window_seconds": 60,
  "tiers": {
    "t": {
      "limit": 5,
      "degraded": 1
    }
  },
  "api_keys": {
    "k": "t",
    "lg-t-abcd-1": "t",
    "lg-t-abcd-2": "t"
  }
}
`, string(got))
	assert.Equal(t, map[string]string{"k": "t"}, src.APIKeys, "the source is not changed")
}

func TestGenConfigOfShippedFileLoadsInTheNode(t *testing.T) {
	src, err := loadTiersFile("../../config/tiers.json")
	require.NoError(t, err)
	data, err := genConfig(src, 50, "0123abcd")
	require.NoError(t, err)

	// The node's own loader must accept it, with the same limits.
	tiers, err := config.Parse(data)
	require.NoError(t, err)
	assert.Equal(t, 9+3*50, tiers.KeyCount())
	for _, name := range src.tierNames() {
		want, _ := src.tier(name)
		got, ok := tiers.Tier(name)
		require.True(t, ok, "tier %s", name)
		assert.Equal(t, [3]int{want.Limit, want.Burst, want.Degraded}, [3]int{got.Limit, got.Burst, got.Degraded}, "tier %s", name)
		tier, ok := tiers.Lookup(generatedKey(name, "0123abcd", 50))
		assert.True(t, ok, "generated key of %s", name)
		assert.Equal(t, name, tier.Name)
	}

	back, err := parseTiersFile(data)
	require.NoError(t, err)
	assert.Equal(t, []string{"lg-pro-0123abcd-1", "lg-pro-0123abcd-2"}, back.keysOf("pro")[:2])
	assert.Equal(t, "pro-demo-3", back.keysOf("pro")[52])
}

// The node's GPU example, with a cost unit and cost and concurrency limits
// per tier: loadgen reads it, and a generated copy keeps every limit.
func TestGenConfigKeepsCostAndConcurrency(t *testing.T) {
	src, err := loadTiersFile("../../config/tiers-gpu.json")
	require.NoError(t, err)
	assert.Equal(t, "audio-seconds", src.CostUnit)
	free, ok := src.tier("free")
	require.True(t, ok)
	assert.Equal(t, tierSpec{Limit: 10, Burst: 20, Degraded: 2,
		Cost:        &costSpec{Limit: 300, Burst: 600, Degraded: 60, DefaultEstimate: 30},
		Concurrency: &limitsSpec{Limit: 1, Burst: 2, Degraded: 1}}, free)

	data, err := genConfig(src, 2, "0123abcd")
	require.NoError(t, err)
	want, err := config.Parse([]byte(mustRead(t, "../../config/tiers-gpu.json")))
	require.NoError(t, err)
	got, err := config.Parse(data)
	require.NoError(t, err)
	assert.Equal(t, want.CostUnit, got.CostUnit)
	for _, name := range src.tierNames() {
		w, _ := want.Tier(name)
		g, ok := got.Tier(name)
		require.True(t, ok, "tier %s", name)
		assert.Equal(t, w, g, "tier %s", name)
	}
	back, err := parseTiersFile(data)
	require.NoError(t, err)
	assert.Equal(t, src.Tiers, back.Tiers)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

func TestGenConfigErrors(t *testing.T) {
	good := tiersFile{WindowSeconds: 60, Tiers: map[string]tierSpec{"t": {Limit: 5}}}
	tests := []struct {
		name    string
		src     tiersFile
		n       int
		wantErr string
	}{
		{name: "no keys", src: good, n: 0, wantErr: "-gen-keys 0: want 1 to 100000"},
		{name: "too many", src: good, n: maxGenKeys + 1, wantErr: "-gen-keys 100001: want 1 to 100000"},
		{
			name:    "tier name with a space",
			src:     tiersFile{WindowSeconds: 60, Tiers: map[string]tierSpec{"a b": {Limit: 5}}},
			n:       1,
			wantErr: `tier "a b": generated key "lg-a b-ab-1" is not a valid API key (printable ASCII without spaces, at most 256 bytes)`,
		},
		{
			name:    "collision",
			src:     tiersFile{WindowSeconds: 60, Tiers: good.Tiers, APIKeys: map[string]string{"lg-t-ab-2": "t"}},
			n:       3,
			wantErr: `generated key "lg-t-ab-2" is already in the config`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := genConfig(tt.src, tt.n, "ab")
			assert.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestValidKey(t *testing.T) {
	long := make([]byte, maxKeyLen+1)
	for i := range long {
		long[i] = 'k'
	}
	tests := map[string]bool{
		"free-demo-1": true, "": false, "a b": false, "tab\t": false, "é": false,
		string(long[:maxKeyLen]): true, string(long): false,
	}
	for k, want := range tests {
		assert.Equal(t, want, validKey(k), "validKey(%q)", k)
	}
}

func TestNewRunID(t *testing.T) {
	a, b := newRunID(), newRunID()
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{8}$`), a)
	assert.NotEqual(t, a, b)
}
