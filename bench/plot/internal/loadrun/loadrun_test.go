package loadrun

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/health"
)

func TestAdmin(t *testing.T) {
	var mu sync.Mutex
	var got []string // method, content type, body of each request
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/system/health" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method, r.Header.Get("Content-Type"), string(body))
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(api.HealthResponse{Status: health.Degraded, Node: "n1", Version: 7})
	}))
	t.Cleanup(s.Close)
	a := Admin{Client: s.Client(), Token: "tok"}

	h, err := a.Health(t.Context(), s.URL)
	require.NoError(t, err)
	assert.Equal(t, "n1", h.Node)
	assert.Equal(t, health.Degraded, h.Status)
	_, err = a.SetStatus(t.Context(), s.URL, "NORMAL")
	require.NoError(t, err)
	assert.Equal(t, []string{
		http.MethodGet, "", "",
		http.MethodPost, "application/json", `{"status":"NORMAL"}`,
	}, got)

	// Another status: a *StatusError with the code and the body.
	_, err = Admin{Client: s.Client(), Token: "wrong"}.Post(t.Context(), s.URL, `{"mode":"auto"}`)
	var se *StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusUnauthorized, se.Code)
	assert.Equal(t, "POST "+s.URL+"/system/health: 401 no", err.Error())
}

func TestSplitList(t *testing.T) {
	assert.Equal(t, []string{"http://a", "http://b"}, SplitList(" http://a/ ,, http://b"))
	assert.Nil(t, SplitList(" , "))
}

func TestParsePerTier(t *testing.T) {
	positive := func(v float64) bool { return v > 0 }
	got, err := ParsePerTier("-rate", "free=9, pro=1.5", positive, "a positive number")
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{"free": 9, "pro": 1.5}, got)
	for s, want := range map[string]string{
		"free":          `-rate "free": "free" is not TIER=NUMBER`,
		"=1":            `-rate "=1": "=1" is not TIER=NUMBER`,
		"free=0":        `-rate "free=0": free=0: want a positive number`,
		"free=x":        `-rate "free=x": free=x: want a positive number`,
		"free=NaN":      `-rate "free=NaN": free=NaN: want a positive number`,
		"free=+Inf":     `-rate "free=+Inf": free=+Inf: want a positive number`,
		"free=1,free=2": `-rate "free=1,free=2": tier free given twice`,
	} {
		_, err := ParsePerTier("-rate", s, positive, "a positive number")
		assert.EqualError(t, err, want, s)
	}
}

func TestCheckWork(t *testing.T) {
	require.NoError(t, CheckWork(0, time.Second))
	assert.EqualError(t, CheckWork(-time.Second, time.Second), "-work -1s: want 0 or more, and less than -timeout 1s")
	assert.EqualError(t, CheckWork(time.Second, time.Second), "-work 1s: want 0 or more, and less than -timeout 1s")
}

func TestTiersFileKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"window_seconds": 60, "tiers": {"free": {"limit": 10}, "pro": {"limit": 100}},
		"api_keys": {"f-2": "free", "f-1": "free", "f-3": "free", "p-1": "pro"}}`), 0o644))
	f, err := ReadTiers(path)
	require.NoError(t, err)
	assert.Equal(t, []string{"free", "pro"}, f.Tiers.Names())
	keys, err := f.Keys("free", 2, "")
	require.NoError(t, err)
	assert.Equal(t, []string{"f-1", "f-2"}, keys, "the first in sorted order")
	_, err = f.Keys("free", 1.5, "")
	assert.EqualError(t, err, "-keys free=1.5: want a whole number")
	_, err = f.Keys("pro", 2, "")
	assert.EqualError(t, err, "tier pro: -keys asks for 2 keys, "+path+" has 1")
	_, err = f.Keys("pro", 2, "write more")
	assert.EqualError(t, err, "tier pro: -keys asks for 2 keys, "+path+" has 1 (write more)")

	_, err = ReadTiers(filepath.Join(t.TempDir(), "none.json"))
	assert.ErrorContains(t, err, "load tiers: ")
	require.NoError(t, os.WriteFile(path, []byte(`{"window_seconds": 60, "tiers": {}}`), 0o644))
	_, err = ReadTiers(path)
	assert.ErrorContains(t, err, "load tiers "+path+": ")
}

func TestSendersTakeTurnsAndBound(t *testing.T) {
	s := NewSenders([]string{"a", "b", "c"}, time.Now().Add(time.Hour), 1)
	var order []string
	for range 4 {
		order = append(order, s.Leave(0))
	}
	assert.Equal(t, []string{"a", "b", "c", "a"}, order, "round-robin")
	assert.Zero(t, s.LagMax(), "none was due yet")
	assert.Zero(t, s.Late())

	hold := make(chan struct{})
	require.True(t, s.Go(func() { <-hold }))
	assert.False(t, s.Go(func() { t.Error("sent past the bound") }), "one in flight at most")
	close(hold)
	s.Wait()
	done := make(chan struct{})
	require.True(t, s.Go(func() { close(done) }), "the slot is free again")
	s.Wait()
	<-done
}

func TestSendersLag(t *testing.T) {
	s := NewSenders([]string{"a"}, time.Now().Add(-time.Second), 1)
	s.Leave(time.Second - 10*time.Millisecond) // 10 ms late: not late
	assert.Zero(t, s.Late())
	s.Leave(0) // a second late
	assert.Equal(t, 1, s.Late())
	assert.GreaterOrEqual(t, s.LagMax(), time.Second)
}

func TestWaitDue(t *testing.T) {
	s := NewSenders([]string{"a"}, time.Now(), 1)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	assert.True(t, s.WaitDue(t.Context(), timer, 5*time.Millisecond))
	assert.GreaterOrEqual(t, time.Since(s.Start()), 5*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.False(t, s.WaitDue(ctx, timer, time.Hour), "ctx ended first")
}

func TestSleepUntil(t *testing.T) {
	require.NoError(t, SleepUntil(t.Context(), time.Now().Add(time.Millisecond)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, SleepUntil(ctx, time.Now().Add(time.Hour)), context.Canceled)
}
