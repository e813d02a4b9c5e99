package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is the time the tests' log lines are stamped from.
var t0 = time.Date(2026, 12, 2, 7, 30, 0, 0, time.UTC)

// logAt returns a node log line stamped at t0+d, as slog's JSON handler
// writes it, with the extra fields in json (without braces).
func logAt(d time.Duration, msg, json string) string {
	if json != "" {
		json = "," + json
	}
	return fmt.Sprintf(`{"time":%q,"level":"INFO","msg":%q%s}`+"\n", t0.Add(d).Format("2006-01-02T15:04:05.000Z07:00"), msg, json)
}

// appendFile appends lines to path.
func appendFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteString(strings.Join(lines, ""))
	require.NoError(t, err)
}

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		want logLine
	}{
		{"members", logAt(0, "members changed", `"alive":2,"members":["a","b"]`), true,
			logLine{Time: t0, Level: "INFO", Msg: "members changed", Members: []string{"a", "b"}}},
		{"version keeps every digit", logAt(time.Millisecond, "adopted health state from peer", `"via":"gossip","version":123456789012345678901`), true,
			logLine{Time: t0.Add(time.Millisecond), Level: "INFO", Msg: "adopted health state from peer", Via: "gossip", Version: "123456789012345678901"}},
		{"not json", "panic: boom\n", false, logLine{}},
		{"no time", `{"msg":"x"}`, false, logLine{}},
		{"blank", "  \n", false, logLine{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseLogLine([]byte(tt.line))
			require.Equal(t, tt.ok, ok, "parseLogLine(%q) ok", tt.line)
			assert.True(t, got.Time.Equal(tt.want.Time), "time = %v, want %v", got.Time, tt.want.Time)
			got.Time, tt.want.Time = time.Time{}, time.Time{}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestTailReadsCompleteLinesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.log")
	tl := &tail{path: path}
	lines, err := tl.lines()
	require.NoError(t, err, "a missing file is no error")
	assert.Empty(t, lines)

	appendFile(t, path, "one\ntw")
	lines, err = tl.lines()
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("one")}, lines, "an unfinished line waits")

	appendFile(t, path, "o\nthree\n")
	lines, err = tl.lines()
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("two"), []byte("three")}, lines)

	lines, err = tl.lines()
	require.NoError(t, err)
	assert.Empty(t, lines, "nothing new")
}

func TestWatchMeetsGoalsFromSince(t *testing.T) {
	dir := t.TempDir()
	nodes := []node{{"a", "http://a", filepath.Join(dir, "a.log")}, {"b", "http://b", filepath.Join(dir, "b.log")}}
	want := []string{"a", "b"}
	// Before since, a already had both: that does not count.
	appendFile(t, nodes[0].Log,
		logAt(0, msgMembers, `"members":["a","b"]`),
		logAt(2*time.Second, msgMembers, `"members":["a"]`),
		logAt(3*time.Second, msgMembers, `"members":["b","a"]`))
	appendFile(t, nodes[1].Log,
		logAt(2500*time.Millisecond, msgMembers, `"members":["a","b"]`),
		logAt(4*time.Second, msgMembers, `"members":["a","b"]`))
	goals := []*goal{{node: "a", ok: ringIs(want)}, {node: "b", ok: ringIs(want)}}
	w := newWatcher(nodes)
	w.poll = time.Millisecond
	require.NoError(t, w.watch(t.Context(), t0.Add(time.Second), goals))
	s := spreadOf(t0.Add(time.Second), goals)
	assert.Equal(t, spread{Want: 2, Met: 2, Median: 1.75, Max: 2, PerNode: map[string]float64{"a": 2, "b": 1.5}}, s)
}

func TestWatchStopsAtDeadlineWithGoalsOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	appendFile(t, path, logAt(0, msgMembers, `"members":["a"]`))
	goals := []*goal{{node: "a", ok: ringIs([]string{"a", "b"})}}
	w := newWatcher([]node{{"a", "http://a", path}})
	w.poll = time.Millisecond
	ctx, cancel := contextWithTimeout(t, 20*time.Millisecond)
	defer cancel()
	require.NoError(t, w.watch(ctx, t0, goals))
	s := spreadOf(t0, goals)
	assert.False(t, s.complete(), "spread %+v", s)
	assert.Equal(t, []string{"a"}, s.Missing)
}

func TestWatchRefusesGoalsOfUnknownNodes(t *testing.T) {
	w := newWatcher(nil)
	err := w.watch(t.Context(), t0, []*goal{{node: "x", ok: stopped}})
	assert.ErrorContains(t, err, "unknown node x")
}
