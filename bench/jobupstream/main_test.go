package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, ctx context.Context, url, key string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func readStats(t *testing.T, url string) stats {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var s stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	return s
}

func TestJobsAreCountedPerKey(t *testing.T) {
	u := newUpstream()
	release := make(chan struct{})
	u.hold = func(ctx context.Context, work time.Duration) bool {
		if work > 0 {
			<-release
		}
		return true
	}
	srv := httptest.NewServer(u)
	defer srv.Close()
	ctx := context.Background()

	// Three jobs of key a at once, one of b; a plain request.
	var wg sync.WaitGroup
	for _, key := range []string{"a", "a", "a", "b"} {
		wg.Go(func() {
			resp, err := get(t, ctx, srv.URL+"/job?work=200ms&cost=30", key)
			if assert.NoError(t, err) {
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "30", resp.Header.Get("Tierlimit-Cost"))
			}
		})
	}
	require.Eventually(t, func() bool { return readStats(t, srv.URL+"/stats").Jobs == 4 }, 10*time.Second, 5*time.Millisecond)
	during := readStats(t, srv.URL+"/stats")
	assert.Equal(t, 3, during.Keys["a"].InFlight)
	assert.Equal(t, 1, during.Keys["b"].InFlight)
	close(release)
	wg.Wait()
	resp, err := get(t, ctx, srv.URL+"/test", "a")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Tierlimit-Cost"))
	resp, err = get(t, ctx, srv.URL+"/job?work=0s", "c") // a job without a cost
	require.NoError(t, err)
	assert.Empty(t, resp.Header.Get("Tierlimit-Cost"))

	s := readStats(t, srv.URL+"/stats")
	assert.Equal(t, uint64(1), s.Plain)
	assert.Equal(t, uint64(5), s.Jobs)
	a := s.Keys["a"]
	require.NotNil(t, a)
	assert.Equal(t, keyStats{Jobs: 3, Cost: 90, InFlight: 0, MaxInFlight: 3, MaxAtUnixMS: a.MaxAtUnixMS}, *a)
	assert.InDelta(t, time.Now().UnixMilli(), a.MaxAtUnixMS, 5000)
	assert.Equal(t, keyStats{Jobs: 1, Cost: 30, MaxInFlight: 1, MaxAtUnixMS: s.Keys["b"].MaxAtUnixMS}, *s.Keys["b"])
	assert.Equal(t, uint64(0), s.Keys["c"].Cost)

	only := readStats(t, srv.URL+"/stats?prefix=b")
	assert.Len(t, only.Keys, 1)
	assert.Contains(t, only.Keys, "b")
}

// A job has ended, at the upstream, before its answer can be read: a
// client that got the answer sees no job of its key in flight.
func TestAJobEndsBeforeItsAnswer(t *testing.T) {
	srv := httptest.NewServer(newUpstream())
	defer srv.Close()
	for range 20 {
		resp, err := get(t, context.Background(), srv.URL+"/job?cost=1", "k")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, 0, readStats(t, srv.URL+"/stats").Keys["k"].InFlight)
	}
}

func TestCanceledJob(t *testing.T) {
	srv := httptest.NewServer(newUpstream())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := get(t, ctx, srv.URL+"/job?work=5s&cost=7", "k")
	require.Error(t, err)
	require.Eventually(t, func() bool { return readStats(t, srv.URL+"/stats").Canceled == 1 }, 3*time.Second, 10*time.Millisecond)
	k := readStats(t, srv.URL+"/stats").Keys["k"]
	assert.Equal(t, keyStats{Jobs: 1, Cost: 7, MaxInFlight: 1, MaxAtUnixMS: k.MaxAtUnixMS, Canceled: 1}, *k)
}

func TestBadJob(t *testing.T) {
	srv := httptest.NewServer(newUpstream())
	defer srv.Close()
	for _, q := range []string{"work=x", "work=-1s", "work=11m", "cost=-1", "cost=1.5", "cost="} {
		resp, err := get(t, context.Background(), srv.URL+"/job?"+q, "k")
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
	s := readStats(t, srv.URL+"/stats")
	assert.Equal(t, uint64(6), s.Bad)
	assert.Equal(t, uint64(0), s.Jobs)
	assert.Empty(t, s.Keys)
}

func TestRunWritesItsAddress(t *testing.T) {
	file := filepath.Join(t.TempDir(), "addr")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-addr-file", file}, io.Discard) }()
	var addr string
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(file)
		addr = strings.TrimSpace(string(b))
		return err == nil && addr != ""
	}, 5*time.Second, 10*time.Millisecond)
	s := readStats(t, "http://"+addr+"/stats")
	assert.Equal(t, uint64(0), s.Jobs)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
}
