package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeTiers(t *testing.T, path, doc string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
}

func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiers.json")
	writeTiers(t, path, `{"window_seconds":60,"tiers":{"free":{"limit":10}},"api_keys":{"k1":"free","k2":"free"}}`)
	f, err := Open(path)
	require.NoError(t, err)
	first := f.Tiers()

	tests := []struct {
		name    string
		doc     string
		wantErr string // "" means the reload is taken
		k1      int    // k1's limit afterwards; 0: unknown
		k2      int
	}{
		{"limit raised and a key removed",
			`{"window_seconds":60,"tiers":{"free":{"limit":12}},"api_keys":{"k1":"free"}}`, "", 12, 0},
		{"a bad field is refused",
			`{"window_seconds":60,"tiers":{"free":{"limit":12,"burst":5}},"api_keys":{"k1":"free"}}`,
			"tiers.free.burst: 5 is less than limit 12", 12, 0},
		{"a new window is refused",
			`{"window_seconds":10,"tiers":{"free":{"limit":3}},"api_keys":{"k1":"free"}}`,
			"window_seconds: 10 differs from 60", 12, 0},
		{"not JSON is refused", `{"window_seconds":`, "load tiers", 12, 0},
		{"a key added back", `{"window_seconds":60,"tiers":{"free":{"limit":7}},"api_keys":{"k1":"free","k2":"free"}}`, "", 7, 7},
	}
	for _, tt := range tests {
		writeTiers(t, path, tt.doc)
		before := f.Tiers()
		err := f.Reload()
		if tt.wantErr != "" {
			require.Error(t, err, "%s: Reload", tt.name)
			assert.Contains(t, err.Error(), tt.wantErr, "%s", tt.name)
			assert.Same(t, before, f.Tiers(), "%s: the table in force changed", tt.name)
		} else {
			require.NoError(t, err, "%s: Reload", tt.name)
			assert.NotSame(t, before, f.Tiers(), "%s: the table in force did not change", tt.name)
		}
		for key, want := range map[string]int{"k1": tt.k1, "k2": tt.k2} {
			tier, ok := f.Lookup(key)
			assert.Equal(t, want != 0, ok, "%s: Lookup(%q) found", tt.name, key)
			assert.Equal(t, want, tier.Limit, "%s: Lookup(%q).Limit", tt.name, key)
		}
	}
	assert.Equal(t, 10, first.keys["k1"].Limit, "a table once returned never changes")
	assert.Equal(t, path, f.Path())
}

func TestOpenRefusesABadFile(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorContains(t, err, "missing.json")
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key  string
		want string // "" means valid
	}{
		{"k", ""},
		{strings.Repeat("x", MaxKeyLen), ""},
		{"", "empty API key"},
		{strings.Repeat("x", MaxKeyLen+1), "API key is 257 bytes, longer than 256"},
		{"a b", "API key has byte 0x20 at 1"},
		{"é", "API key has byte 0xc3 at 0"},
		{"a\x00", "API key has byte 0x0 at 1"},
	}
	for _, tt := range tests {
		err := CheckKey(tt.key)
		if tt.want == "" {
			assert.NoError(t, err, "CheckKey(%q)", tt.key)
			continue
		}
		assert.ErrorContains(t, err, tt.want, "CheckKey(%q)", tt.key)
	}
}

func TestKeyHash(t *testing.T) {
	h := KeyHash("free-demo-1")
	assert.Len(t, h, 8)
	assert.Equal(t, h, KeyHash("free-demo-1"), "stable")
	assert.NotEqual(t, h, KeyHash("free-demo-2"))
	assert.NotContains(t, h, "free")
}
