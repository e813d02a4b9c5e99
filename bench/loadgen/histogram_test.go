package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuantileExactBelowTwoMicroseconds(t *testing.T) {
	h := newHistogram()
	for v := 2000; v >= 1; v-- {
		h.Record(time.Duration(v))
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1}, {0.0005, 1}, {0.5, 1000}, {0.9, 1800}, {0.99, 1980}, {0.999, 1998}, {1, 2000},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, h.Quantile(tt.q), "Quantile(%g)", tt.q)
	}
	assert.Equal(t, uint64(2000), h.Count())
	assert.Equal(t, time.Duration(2000), h.Max())
	assert.Equal(t, time.Duration(1001), h.Mean()) // 1000.5 rounds up
}

// TestQuantileWithinPrecision records log-uniform values from 1 µs to 10 s
// and wants every quantile at or above the value of its rank (HdrHistogram's
// round(q × count)) and within 2^-10 of it.
func TestQuantileWithinPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := newHistogram()
	vals := make([]time.Duration, 10_000)
	for i := range vals {
		vals[i] = time.Duration(math.Exp(math.Log(1e3) + rng.Float64()*(math.Log(1e10)-math.Log(1e3))))
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999} {
		rank := max(int(math.Round(q*float64(len(vals)))), 1)
		want := vals[rank-1]
		got := h.Quantile(q)
		assert.GreaterOrEqual(t, got, want, "Quantile(%g) = %v, want at least %v, the value of rank %d", q, got, want, rank)
		assert.LessOrEqual(t, float64(got-want), float64(want)/1024, "Quantile(%g) = %v, want within 2^-10 of %v", q, got, want)
	}
	assert.Equal(t, vals[len(vals)-1], h.Quantile(1), "Quantile(1) is the exact max")
	assert.Equal(t, vals[0], h.Quantile(0), "Quantile(0) is the exact min")
}

func TestQuantileLogLinear(t *testing.T) {
	h := newHistogram()
	for range 99 {
		h.Record(time.Millisecond)
	}
	h.Record(100 * time.Millisecond)
	assert.Equal(t, 1_000_447*time.Nanosecond, h.Quantile(0.5), "the top of 1 ms's bucket")
	assert.Equal(t, 1_000_447*time.Nanosecond, h.Quantile(0.99))
	assert.Equal(t, 100*time.Millisecond, h.Quantile(0.999), "clamped to the exact max")
	assert.Equal(t, 100*time.Millisecond, h.Max())
	assert.Equal(t, 1_990_000*time.Nanosecond, h.Mean())
}

func TestQuantileSingleValueIsExact(t *testing.T) {
	h := newHistogram()
	h.Record(1234567 * time.Nanosecond)
	for _, q := range []float64{0, 0.5, 1} {
		assert.Equal(t, 1234567*time.Nanosecond, h.Quantile(q), "Quantile(%g)", q)
	}
}

func TestHistogramEmptyNegativeAndHuge(t *testing.T) {
	h := newHistogram()
	assert.Zero(t, h.Quantile(0.5))
	assert.Zero(t, h.Mean())
	assert.Zero(t, h.Max())
	assert.Nil(t, h.Percentiles([]float64{50, 99}))

	h.Record(-5)
	assert.Equal(t, uint64(1), h.Count(), "a negative value counts as 0")
	assert.Zero(t, h.Quantile(1))

	huge := time.Duration(1 << 50) // past histMax: counted as histMax
	h.Record(huge)
	assert.Equal(t, uint64(2), h.Count())
	assert.Equal(t, huge, h.Max(), "Max is exact past histMax")
	assert.Equal(t, huge, h.Quantile(1))
	assert.LessOrEqual(t, h.h.ByteSize(), 260<<10, "memory of one histogram")
}

func TestHistogramPercentiles(t *testing.T) {
	h := newHistogram()
	for i := range 5000 {
		h.Record(time.Duration(i*i) * time.Nanosecond)
	}
	ps := distributionPercentiles[:]
	got := h.Percentiles(ps)
	require.Len(t, got, len(ps))
	for i, p := range ps {
		assert.Equal(t, h.Quantile(p/100), got[i], "Percentiles: the value at %g, want Quantile(%g)", p, p/100)
	}
	assert.True(t, slices.IsSorted(got), "Percentiles(%v) = %v, want ascending", ps, got)
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	for i := range 500 {
		d := time.Duration(i*i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	merged := newHistogram()
	merged.Merge(a)
	merged.Merge(b)
	merged.Merge(newHistogram())
	assert.Equal(t, all.Count(), merged.Count())
	assert.Equal(t, all.Percentiles(distributionPercentiles[:]), merged.Percentiles(distributionPercentiles[:]))
	assert.Equal(t, all.min, merged.min)
	assert.Equal(t, all.max, merged.max)
	assert.InDelta(t, all.sum, merged.sum, 1)
}
