package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplice(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"replaces", "intro\n" + beginMarker + "\nold\n" + endMarker + "\nafter\n",
			"intro\n" + beginMarker + "\nnew\n" + endMarker + "\nafter\n"},
		{"appends", "intro\n\n", "intro\n\n" + beginMarker + "\nnew\n" + endMarker + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splice([]byte(tt.doc), "new\n")
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
		})
	}
	_, err := splice([]byte(endMarker+"\n"+beginMarker), "new\n")
	assert.Error(t, err, "markers out of order")
}

func TestReplaceSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.md")
	require.NoError(t, os.WriteFile(path, []byte("# Gossip\n"+beginMarker+"\n"+endMarker+"\n"), 0o644))
	require.NoError(t, replaceSection(path, "table\n"))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# Gossip\n"+beginMarker+"\ntable\n"+endMarker+"\n", string(got))
	assert.Error(t, replaceSection(filepath.Join(t.TempDir(), "missing.md"), "x"), "a missing doc")
}

func TestDur(t *testing.T) {
	assert.Equal(t, "-", dur(0))
	assert.Equal(t, "850 ms", dur(850*time.Millisecond))
	assert.Equal(t, "9999 ms", dur(9999*time.Millisecond))
	assert.Equal(t, "12.5 s", dur(12500*time.Millisecond))
}

func TestHealthBytes(t *testing.T) {
	n := healthBytes()
	assert.True(t, n > 50 && n < 200, "healthBytes() = %d, want about 100", n)
}

func TestReport(t *testing.T) {
	spec := Spec{Label: defaultLabel, Members: 100, Broadcasts: 2, Victims: 1, Phases: lanPhases}
	cfg := *spec.base()
	rs := []*Result{
		{Spec: spec, Config: cfg, Join: 2 * time.Second, Reach: []time.Duration{time.Second, 2 * time.Second},
			Half: []time.Duration{time.Second}, Dead: []time.Duration{9 * time.Second},
			Wall: 30 * time.Second, CPU: 15 * time.Second},
	}
	check := Spec{Label: pushPullLabel(2 * time.Second), Members: 100, Laggards: 3, Settings: Settings{PushPullInterval: 2 * time.Second}, Phases: lanPhases}
	rs = append(rs, &Result{Spec: check, Config: *check.base(), Laggard: []time.Duration{time.Second, 3 * time.Second}, PerXchg: 9000})
	md := report(rs, runInfo{total: time.Minute})
	for _, want := range []string{
		"| default | 100 | 1000 ms | 1000 ms | 2000 ms | 5.0 |", // half, all median (nearest rank), max, rounds
		"| 2s | 100 | 6000 ms | 2 |",                            // the check's scaled interval and samples
		"| 30s | 100 | 90.0 s | 33.1 s / 30.0 s | 90.0 s / 45.0 s | 100 (9.0 KB an exchange) |",
	} {
		assert.Contains(t, md, want)
	}
}
