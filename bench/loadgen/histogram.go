package main

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The histogram's range and precision.
const (
	// histMax bounds the values told apart: 2^40 ns is about 18 minutes,
	// far beyond any -timeout loadgen accepts. Larger values are counted
	// as histMax; Max still reports them exactly.
	histMax = 1 << 40
	// histDigits is HdrHistogram's number of significant decimal digits:
	// values up to 2,047 ns are counted exactly, larger ones within 2^-10
	// (0.1%) of themselves: 1 µs at 1 ms, 1 ms at 1 s.
	histDigits = 3
)

// histogram counts durations in an HdrHistogram from 1 ns to histMax at
// histDigits significant digits: quantiles accurate to 0.1% in bounded
// memory (256 KiB) whatever the number of values. Beside it, it keeps the
// exact minimum, maximum and sum, which HdrHistogram knows only to its
// precision, so Max and Mean are exact and quantiles stay within [min,
// max]. Make one with newHistogram; it is not safe for concurrent use.
type histogram struct {
	h *hdrhistogram.Histogram
	// sum is in nanoseconds; a float64 so that 10^8 values of minutes each
	// cannot overflow it.
	sum float64
	min time.Duration
	max time.Duration
}

// newHistogram returns an empty histogram.
func newHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(1, histMax, histDigits)}
}

// Record counts one value. Negative values count as zero.
func (h *histogram) Record(d time.Duration) {
	d = max(d, 0)
	// In range after the clamp, so RecordValue cannot fail.
	_ = h.h.RecordValue(min(int64(d), histMax))
	if h.h.TotalCount() == 1 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.sum += float64(d)
}

// Merge adds the counts of o to h.
func (h *histogram) Merge(o *histogram) {
	if o.Count() == 0 {
		return
	}
	if h.Count() == 0 || o.min < h.min {
		h.min = o.min
	}
	h.h.Merge(o.h) // same range: nothing is dropped
	h.max = max(h.max, o.max)
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *histogram) Count() uint64 { return uint64(h.h.TotalCount()) }

// Max returns the largest value recorded, exactly; 0 if none.
func (h *histogram) Max() time.Duration { return h.max }

// Mean returns the mean of the values recorded; 0 if none.
func (h *histogram) Mean() time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.Count())))
}

// Quantile returns the value below or at which a fraction q (0 to 1) of the
// values lie, as HdrHistogram defines it: the largest value of the bucket
// holding the value of rank round(q × count) (at least 1), kept within the
// exact minimum and maximum. So Quantile(1) is Max, and values under
// 2.048 µs come back exactly. It returns 0 for an empty histogram.
func (h *histogram) Quantile(q float64) time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return h.at(100*q, h.h.ValueAtQuantile(100*min(max(q, 0), 1)))
}

// Percentiles returns the value at each of ps (in percent, 0 to 100), as
// Quantile(p / 100) would, in one pass over the counts; nil for an empty
// histogram.
func (h *histogram) Percentiles(ps []float64) []time.Duration {
	if h.Count() == 0 {
		return nil
	}
	vs := h.h.ValueAtPercentilesSlice(ps)
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = h.at(ps[i], v)
	}
	return out
}

// at returns the value at percentile p, given HdrHistogram's v nanoseconds
// for it: v within the exact minimum and maximum, and the maximum itself
// at 100, even if it lies past histMax.
func (h *histogram) at(p float64, v int64) time.Duration {
	if p >= 100 {
		return h.max
	}
	return min(max(time.Duration(v), h.min), h.max)
}
