package main

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPushPullScale(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{
		{1, 30 * time.Second},
		{32, 30 * time.Second},
		{33, 60 * time.Second},
		{64, 60 * time.Second},
		{65, 90 * time.Second},
		{100, 90 * time.Second},
		{128, 90 * time.Second},
		{300, 150 * time.Second},
	} {
		assert.Equal(t, tt.want, pushPullScale(30*time.Second, tt.n), "pushPullScale(30s, %d)", tt.n)
	}
}

func TestRetransmitLimit(t *testing.T) {
	assert.Equal(t, 4, retransmitLimit(4, 9), "retransmitLimit(4, 9)")
	assert.Equal(t, 8, retransmitLimit(4, 10), "retransmitLimit(4, 10)")
	assert.Equal(t, 12, retransmitLimit(4, 100), "retransmitLimit(4, 100)")
	assert.Equal(t, 24, retransmitLimit(8, 300), "retransmitLimit(8, 300)")
}

func TestSuspicionTimeout(t *testing.T) {
	assert.Equal(t, 4*time.Second, suspicionTimeout(4, 5, time.Second), "suspicionTimeout(4, 5, 1s)")
	assert.Equal(t, 8*time.Second, suspicionTimeout(4, 100, time.Second), "suspicionTimeout(4, 100, 1s)")
	assert.InDelta(t, 4*math.Log10(300), suspicionTimeout(4, 300, time.Second).Seconds(), 0.001, "suspicionTimeout(4, 300, 1s)")
}

func TestExpectedPushPullWait(t *testing.T) {
	assert.InDelta(t, 90/math.E, expectedPushPullWait(90*time.Second).Seconds(), 0.001)
}

func TestQuantileAndMean(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	assert.Equal(t, time.Duration(1), quantile(ds, 0))
	assert.Equal(t, time.Duration(3), quantile(ds, 0.5))
	assert.Equal(t, time.Duration(5), quantile(ds, 1))
	assert.Equal(t, time.Duration(3), mean(ds))
	assert.Equal(t, []time.Duration{5, 1, 4, 2, 3}, ds, "quantile changed its input")
	assert.Zero(t, quantile(nil, 0.5))
	assert.Zero(t, mean(nil))
}

func TestMissProbability(t *testing.T) {
	assert.InDelta(t, math.Exp(-12), missProbability(12), 1e-12)
	assert.InDelta(t, 4950*math.Exp(-12), expectedMissingPairs(4, 100), 1e-9)
}
