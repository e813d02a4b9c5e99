package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBucketBoundaries(t *testing.T) {
	tests := []struct {
		v      uint64
		bucket int
		lo, hi uint64
	}{
		{v: 0, bucket: 0, lo: 0, hi: 0},
		{v: 1, bucket: 1, lo: 1, hi: 1},
		{v: 1023, bucket: 1023, lo: 1023, hi: 1023},
		{v: 1024, bucket: 1024, lo: 1024, hi: 1025},
		{v: 1025, bucket: 1024, lo: 1024, hi: 1025},
		{v: 1026, bucket: 1025, lo: 1026, hi: 1027},
		{v: 2047, bucket: 1535, lo: 2046, hi: 2047},
		{v: 2048, bucket: 1536, lo: 2048, hi: 2051},
		{v: 1_000_000, bucket: 6096, lo: 999_424, hi: 1_000_447},
		{v: 1<<40 - 1, bucket: histBuckets - 1, lo: 1023 << 30, hi: 1<<40 - 1},
		{v: 1 << 50, bucket: histBuckets - 1, lo: 1023 << 30, hi: 1<<40 - 1}, // clamped
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.v), func(t *testing.T) {
			b := bucketOf(tt.v)
			assert.Equal(t, tt.bucket, b, "bucketOf(%d)", tt.v)
			lo, hi := bucketRange(b)
			assert.Equal(t, [2]uint64{tt.lo, tt.hi}, [2]uint64{lo, hi}, "bucketRange(%d)", b)
		})
	}
}

func TestBucketsTileTheRangeWithinPrecision(t *testing.T) {
	var next uint64
	for b := range histBuckets {
		lo, hi := bucketRange(b)
		if !assert.Equal(t, next, lo, "bucket %d starts at %d, want right after the previous one", b, lo) {
			return
		}
		assert.Equal(t, b, bucketOf(lo), "bucketOf(%d)", lo)
		assert.Equal(t, b, bucketOf(hi), "bucketOf(%d)", hi)
		if lo >= 1<<histSubBits {
			width := float64(hi - lo + 1)
			assert.LessOrEqual(t, width/float64(lo), 1.0/(1<<(histSubBits-1)), "bucket %d [%d, %d] is too wide", b, lo, hi)
		}
		next = hi + 1
	}
	assert.Equal(t, uint64(1<<histMaxBits), next)
}

func TestQuantileExactBelowOneMicrosecond(t *testing.T) {
	var h histogram
	for v := 1000; v >= 1; v-- {
		h.Record(time.Duration(v))
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1}, {0.001, 1}, {0.5, 500}, {0.9, 900}, {0.99, 990}, {0.999, 999}, {1, 1000},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, h.Quantile(tt.q), "Quantile(%g)", tt.q)
	}
	assert.Equal(t, uint64(1000), h.Count())
	assert.Equal(t, time.Duration(1000), h.Max())
	assert.Equal(t, time.Duration(501), h.Mean()) // 500.5 rounds up
}

func TestQuantileLogLinear(t *testing.T) {
	var h histogram
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
	var h histogram
	h.Record(1234567 * time.Nanosecond)
	for _, q := range []float64{0, 0.5, 1} {
		assert.Equal(t, 1234567*time.Nanosecond, h.Quantile(q), "Quantile(%g)", q)
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h histogram
	assert.Zero(t, h.Quantile(0.5))
	assert.Zero(t, h.Mean())
	assert.Zero(t, h.Max())
	h.Record(-5)
	assert.Equal(t, uint64(1), h.counts[0], "a negative value counts as 0")
	assert.Zero(t, h.Quantile(1))
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all histogram
	for i := range 500 {
		d := time.Duration(i*i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&histogram{})
	assert.Equal(t, all.counts, merged.counts)
	assert.Equal(t, all.total, merged.total)
	assert.Equal(t, all.min, merged.min)
	assert.Equal(t, all.max, merged.max)
	assert.InDelta(t, all.sum, merged.sum, 1)
}
