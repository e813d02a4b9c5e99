package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClassify(t *testing.T) {
	tests := map[int]outcome{
		200: outcomeOK, 401: outcomeUnauthorized, 429: outcomeLimited,
		400: outcomeClientError, 404: outcomeClientError, 499: outcomeClientError,
		500: outcomeServerError, 503: outcomeServerError, 599: outcomeServerError,
		100: outcomeOther, 201: outcomeOther, 204: outcomeOther, 302: outcomeOther, 600: outcomeOther,
	}
	for status, want := range tests {
		assert.Equal(t, want, classify(status), "classify(%d)", status)
	}
}

func TestStatsRecordAndMerge(t *testing.T) {
	results := []result{
		{tier: 0, accuracy: 0, target: "a", outcome: outcomeOK, latency: 100, limit: 20, remaining: 19},
		{tier: 0, accuracy: 0, target: "b", outcome: outcomeLimited, latency: 300, limit: 20, remaining: 0},
		{tier: 0, accuracy: 0, target: "a", outcome: outcomeOK, latency: 200, limit: 2, remaining: 0},
		{tier: 1, accuracy: -1, target: "a", outcome: outcomeOK, latency: 50, limit: -1, remaining: -1},
		{tier: 1, accuracy: 1, target: "b", outcome: outcomeTransport, limit: -1, remaining: -1, err: "refused"},
		{tier: 1, accuracy: 1, target: "b", outcome: outcomeServerError, latency: 400, limit: -1, remaining: -1},
	}
	one := newStats(2, 2)
	a, b := newStats(2, 2), newStats(2, 2)
	for i, r := range results {
		one.record(r)
		if i%2 == 0 {
			a.record(r)
		} else {
			b.record(r)
		}
	}
	merged := newStats(2, 2)
	merged.merge(a)
	merged.merge(b)

	for name, s := range map[string]*stats{"recorded": one, "merged": merged} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, counts{outcomeOK: 3, outcomeLimited: 1, outcomeServerError: 1, outcomeTransport: 1}, s.outcomes)
			assert.Equal(t, []counts{{outcomeOK: 2, outcomeLimited: 1}, {outcomeOK: 1, outcomeServerError: 1, outcomeTransport: 1}}, s.tiers)
			assert.Equal(t, map[string]*counts{
				"a": {outcomeOK: 3},
				"b": {outcomeLimited: 1, outcomeServerError: 1, outcomeTransport: 1},
			}, s.targets)
			assert.Equal(t, uint64(5), s.latency.Count(), "every response, not the transport error")
			assert.Equal(t, time.Duration(400), s.latency.Max())
			assert.Equal(t, uint64(1), s.missingLimit, "the 200 without a limit")
			assert.Equal(t, map[string]uint64{"refused": 1}, s.errors)

			assert.Equal(t, counts{outcomeOK: 2, outcomeLimited: 1}, s.keys[0].outcomes)
			assert.ElementsMatch(t, []int{20, 2}, s.keys[0].limits)
			assert.Equal(t, 19, s.keys[0].maxRemaining)
			assert.Equal(t, keyStats{outcomes: counts{outcomeServerError: 1, outcomeTransport: 1}, maxRemaining: -1}, s.keys[1])
		})
	}
}

func TestStatsBounds(t *testing.T) {
	s := newStats(1, 1)
	for i := range maxTargets + 5 {
		s.record(result{target: fmt.Sprint("t", i), outcome: outcomeTransport, err: fmt.Sprint("e", i), accuracy: -1})
	}
	assert.Len(t, s.targets, maxTargets+1)
	assert.Equal(t, counts{outcomeTransport: 5}, *s.targets[otherTargets])
	assert.Len(t, s.errors, maxErrorKinds+1)
	assert.Equal(t, uint64(maxTargets+5-maxErrorKinds), s.errors[otherErrors])

	for l := range 2 * maxLimitsSeen {
		s.record(result{accuracy: 0, outcome: outcomeOK, limit: l, remaining: 0})
	}
	assert.Len(t, s.keys[0].limits, maxLimitsSeen)
}
