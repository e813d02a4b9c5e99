package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/health"
)

// fakeCluster is a set of fake nodes: a POST of a state to one of them
// makes every other one log that it adopted it (by push/pull for the names
// in pushPull), and GET shows the newest version.
type fakeCluster struct {
	t        *testing.T
	token    string
	pushPull map[string]bool
	nodes    []node
	// mu guards version and posts.
	mu      sync.Mutex
	version uint64
	posts   []string // "node status"
}

func newFakeCluster(t *testing.T, names ...string) (*fakeCluster, string) {
	t.Helper()
	c := &fakeCluster{t: t, token: "tok", pushPull: map[string]bool{}, version: 1 << 60}
	urls := map[string]string{}
	for _, n := range names {
		srv := httptest.NewServer(c.handler(n))
		t.Cleanup(srv.Close)
		urls[n] = srv.URL
	}
	path, nodes := writeNodes(t, t.TempDir(), urls, names...)
	c.nodes = nodes
	return c, path
}

func (c *fakeCluster) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+c.token {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if r.Method == http.MethodPost {
			var body struct{ Status string }
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			c.version++
			c.posts = append(c.posts, name+" "+body.Status)
			for _, n := range c.nodes {
				if n.Name == name {
					continue
				}
				via := "gossip"
				if c.pushPull[n.Name] {
					via = "push_pull"
				}
				line := fmt.Sprintf(`{"time":%q,"level":"INFO","msg":%q,"via":%q,"version":%d}`+"\n",
					time.Now().Add(5*time.Millisecond).Format(time.RFC3339Nano), msgAdopted, via, c.version)
				appendFile(c.t, n.Log, line)
			}
		}
		var st health.Status
		require.NoError(c.t, st.UnmarshalText([]byte("NORMAL")))
		_ = json.NewEncoder(w).Encode(api.HealthResponse{Status: st, Version: c.version, Node: name})
	})
}

func TestHealthWritesReachEveryNode(t *testing.T) {
	c, path := newFakeCluster(t, "a", "b", "c")
	c.pushPull["c"] = true
	out := filepath.Join(t.TempDir(), "health.json")
	start := time.Now()
	err := run(t.Context(), []string{"health", "-nodes", path, "-token", c.token, "-writes", "3", "-gap", "1ms",
		"-timeout", "5s", "-out", out}, io.Discard, io.Discard)
	require.NoError(t, err)
	took := time.Since(start).Seconds()
	var got healthResult
	require.NoError(t, readJSON(out, &got))
	require.Len(t, got.Writes, 3)
	assert.Equal(t, []string{"a NORMAL", "b DEGRADED", "c NORMAL"}, c.posts, "writes alternate, end on NORMAL, each to another node")
	for i, w := range got.Writes {
		assert.True(t, w.Applied.complete(), "write %d: %+v", i, w.Applied)
		assert.Equal(t, 2, w.Applied.Want, "write %d: every node but the one posted to", i)
		// The fake logs each adoption 5 ms after the POST it answers, so
		// the spread, in seconds, is at least that and at most that plus
		// the whole run, however slow the machine was.
		assert.GreaterOrEqual(t, w.Applied.Max, 0.005, "write %d", i)
		assert.LessOrEqual(t, w.Applied.Max, 0.005+took, "write %d: Applied.Max, in seconds, within the run", i)
	}
	assert.Equal(t, []int{1, 1, 0}, []int{got.Writes[0].ViaPushPull, got.Writes[1].ViaPushPull, got.Writes[2].ViaPushPull},
		"c got the first two by push/pull; the third was posted to it")
	assert.True(t, got.Agree, "disagree: %v", got.Disagree)
}

func TestHealthWriteThatDoesNotArrive(t *testing.T) {
	c, path := newFakeCluster(t, "a", "b")
	c.nodes[1].Log = filepath.Join(t.TempDir(), "elsewhere.log") // b's adoptions go where nobody reads
	out := filepath.Join(t.TempDir(), "health.json")
	err := run(t.Context(), []string{"health", "-nodes", path, "-token", c.token, "-writes", "1",
		"-timeout", "50ms", "-out", out}, io.Discard, io.Discard)
	require.NoError(t, err)
	var got healthResult
	require.NoError(t, readJSON(out, &got))
	require.Len(t, got.Writes, 1)
	assert.Equal(t, []string{"b"}, got.Writes[0].Applied.Missing)
}

func TestHealthRefusedPost(t *testing.T) {
	c, path := newFakeCluster(t, "a", "b")
	err := run(t.Context(), []string{"health", "-nodes", path, "-token", "wrong", "-out", filepath.Join(t.TempDir(), "h.json")}, io.Discard, io.Discard)
	assert.ErrorContains(t, err, "status 401")
	assert.Empty(t, c.posts)
}
