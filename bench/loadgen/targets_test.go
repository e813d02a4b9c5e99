package main

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDNSTargets(t *testing.T) {
	got := dnsTargets([]string{"10.0.0.2", "10.0.0.1", "::1", "10.0.0.1"}, "8080")
	assert.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://[::1]:8080"}, got)
}

func TestStaticTargetsRoundRobin(t *testing.T) {
	s := newStaticTargets([]string{"a", "b", "c"})
	var got []string
	for n := range uint64(5) {
		got = append(got, s.at(n))
	}
	assert.Equal(t, []string{"a", "b", "c", "a", "b"}, got)
	assert.Empty(t, s.host)
}

// fakeResolver answers lookups from a script, one answer per call; the last
// answer repeats. It is safe for concurrent use.
type fakeResolver struct {
	mu      sync.Mutex
	answers []fakeAnswer
	calls   int
}

type fakeAnswer struct {
	addrs []string
	err   error
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.answers[min(r.calls, len(r.answers)-1)]
	r.calls++
	return a.addrs, a.err
}

func TestDNSWatcherFollowsTheName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeResolver{answers: []fakeAnswer{
			{addrs: []string{"10.0.0.1"}},
			{addrs: []string{"10.0.0.2", "10.0.0.1"}},
			{err: errors.New("server misbehaving")},
			{addrs: nil},
			{addrs: []string{"10.0.0.3"}},
		}}
		var log bytes.Buffer
		w, err := startDNS(t.Context(), r, "nodes:8080", time.Second, &log)
		require.NoError(t, err)
		defer w.Close()
		assert.Equal(t, "nodes:8080", w.set.host, "sent as Host")

		want := [][]string{
			{"http://10.0.0.1:8080"},
			{"http://10.0.0.1:8080", "http://10.0.0.2:8080"},
			{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, // lookup failed: kept
			{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, // no address: kept
			{"http://10.0.0.3:8080"},
		}
		for i, w8 := range want {
			if i > 0 {
				time.Sleep(time.Second)
				synctest.Wait()
			}
			assert.Equal(t, w8, w.set.current(), "after %d lookups", i+1)
		}
		assert.Equal(t, "dns: nodes now resolves to 2 targets: http://10.0.0.1:8080, http://10.0.0.2:8080\n"+
			"dns: resolve nodes: server misbehaving; keeping 2 targets\n"+
			"dns: resolve nodes: no addresses; keeping 2 targets\n"+
			"dns: nodes now resolves to 1 targets: http://10.0.0.3:8080\n", log.String())
	})
}

func TestStartDNSFails(t *testing.T) {
	_, err := startDNS(t.Context(), &fakeResolver{answers: []fakeAnswer{{err: errors.New("no such host")}}}, "nodes:1", time.Second, &bytes.Buffer{})
	assert.EqualError(t, err, "resolve nodes: no such host")
	_, err = startDNS(t.Context(), &fakeResolver{answers: []fakeAnswer{{}}}, "nodes:1", time.Second, &bytes.Buffer{})
	assert.EqualError(t, err, "resolve nodes: no addresses")
}
