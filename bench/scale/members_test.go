package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// contextWithTimeout returns a context of the test's that ends after d.
func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(t.Context(), d)
}

// writeNodes writes a nodes file for names, with logs in dir, and returns
// its path and the nodes.
func writeNodes(t *testing.T, dir string, urls map[string]string, names ...string) (string, []node) {
	t.Helper()
	var nodes []node
	var text string
	for _, n := range names {
		u := urls[n]
		if u == "" {
			u = "http://" + n
		}
		nd := node{Name: n, URL: u, Log: filepath.Join(dir, n+".log")}
		nodes = append(nodes, nd)
		text += fmt.Sprintf("%s\t%s\t%s\n", nd.Name, nd.URL, nd.Log)
	}
	path := filepath.Join(dir, "nodes.tsv")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return path, nodes
}

func TestMedianAndMax(t *testing.T) {
	tests := []struct {
		xs       []float64
		med, max float64
	}{
		{nil, 0, 0},
		{[]float64{3}, 3, 3},
		{[]float64{3, 1, 2}, 2, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 4},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.med, median(tt.xs), "median(%v)", tt.xs)
		assert.Equal(t, tt.max, maxOf(tt.xs), "maxOf(%v)", tt.xs)
	}
}

func TestReadNodes(t *testing.T) {
	dir := t.TempDir()
	path, want := writeNodes(t, dir, nil, "a", "b")
	got, err := readNodes(path)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	for name, text := range map[string]string{
		"two fields": "a\thttp://a\n",
		"twice":      "a\thttp://a\tx\na\thttp://a\ty\n",
		"empty":      "\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.tsv")
			require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
			_, err := readNodes(p)
			assert.Error(t, err, "readNodes(%q)", text)
		})
	}
}

func TestMembersAfterKillAndLeave(t *testing.T) {
	dir := t.TempDir()
	path, nodes := writeNodes(t, dir, nil, "a", "b", "c", "d")
	// d was killed at t0 (gone); c leaves at t0+1s.
	appendFile(t, nodes[0].Log,
		logAt(500*time.Millisecond, msgMembers, `"members":["a","b","c"]`),
		logAt(1200*time.Millisecond, msgMembers, `"members":["a","b"]`),
		logAt(1400*time.Millisecond, msgPeerLeft, `"peer":"c"`))
	appendFile(t, nodes[1].Log,
		logAt(1300*time.Millisecond, msgMembers, `"members":["b","a"]`),
		logAt(1500*time.Millisecond, msgPeerFailed, `"peer":"c"`))
	appendFile(t, nodes[2].Log, logAt(2*time.Second, msgNodeStopped, ""))
	out := filepath.Join(dir, "leave.json")
	err := run(t.Context(), []string{"members", "-nodes", path, "-since", fmt.Sprint(t0.Add(time.Second).UnixMilli()),
		"-gone", "d,c", "-left", "c", "-exit", "c", "-timeout", "1s", "-out", out}, io.Discard, io.Discard)
	require.NoError(t, err)
	var got membersResult
	require.NoError(t, readJSON(out, &got))
	assert.True(t, got.Ring.complete(), "ring %+v", got.Ring)
	assert.InDelta(t, 0.3, got.Ring.Max, 1e-9)
	require.NotNil(t, got.Left)
	assert.InDelta(t, 0.5, got.Left.Max, 1e-9)
	assert.Equal(t, []string{"b"}, got.LeftAsFailed, "b declared c dead before it heard c leave")
	require.NotNil(t, got.Exit)
	assert.InDelta(t, 1.0, got.Exit.Max, 1e-9)
	assert.Equal(t, []string{"d", "c"}, got.Gone)
}
