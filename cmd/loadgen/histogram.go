package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, in the manner of HdrHistogram: values below
// 2^histSubBits nanoseconds each have their own bucket, and every power of
// two above that is cut into 2^(histSubBits-1) equal buckets. A recorded
// value is therefore known to within 2^-(histSubBits-1) of itself: exact up
// to 1.023 µs, within 0.2% above (2 µs at 1 ms, 2 ms at 1 s).
const (
	// histSubBits sets the precision; see above.
	histSubBits = 10
	// histMaxBits bounds the values told apart: 2^40 ns is about 18
	// minutes, far beyond any -timeout loadgen accepts. Larger values are
	// counted in the last bucket; Max still reports them exactly.
	histMaxBits = 40
	// histBuckets is the number of buckets: the linear 2^histSubBits, then
	// 2^(histSubBits-1) for each power of two up to 2^histMaxBits; 16384
	// in all, 128 KiB of counters.
	histBuckets = (histMaxBits - histSubBits + 2) << (histSubBits - 1)
)

// histogram counts durations in log-linear buckets, so that quantiles are
// accurate to 0.2% in bounded memory whatever the number of values. The zero
// value is an empty histogram ready to use. It is not safe for concurrent
// use.
type histogram struct {
	counts [histBuckets]uint64
	total  uint64
	// sum is in nanoseconds; a float64 so that 10^8 values of minutes each
	// cannot overflow it.
	sum float64
	min time.Duration
	max time.Duration
}

// bucketOf returns the index of the bucket that counts v nanoseconds.
func bucketOf(v uint64) int {
	const linear = 1 << histSubBits
	if v < linear {
		return int(v)
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	// v>>shift lies in [linear/2, linear): the top histSubBits bits of v.
	shift := bits.Len64(v) - histSubBits
	return shift<<(histSubBits-1) + int(v>>shift)
}

// bucketRange returns the smallest and largest value, in nanoseconds, that
// bucket i counts.
func bucketRange(i int) (lo, hi uint64) {
	const linear = 1 << histSubBits
	if i < linear {
		return uint64(i), uint64(i)
	}
	shift := i>>(histSubBits-1) - 1
	mantissa := uint64(i - shift<<(histSubBits-1))
	return mantissa << shift, (mantissa+1)<<shift - 1
}

// Record counts one value. Negative values count as zero.
func (h *histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	if h.total == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.total++
	h.sum += float64(d)
}

// Merge adds the counts of o to h.
func (h *histogram) Merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *histogram) Count() uint64 { return h.total }

// Max returns the largest value recorded, exactly; 0 if none.
func (h *histogram) Max() time.Duration { return h.max }

// Mean returns the mean of the values recorded; 0 if none.
func (h *histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.total)))
}

// Quantile returns the value below or at which a fraction q (0 to 1) of the
// values lie: the largest value of the bucket holding the value of rank
// ceil(q × count), kept within the exact minimum and maximum. So
// Quantile(1) is Max, and values under 1.024 µs come back exactly. It
// returns 0 for an empty histogram.
func (h *histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := max(uint64(math.Ceil(q*float64(h.total))), 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketRange(i)
			return min(max(time.Duration(hi), h.min), h.max)
		}
	}
	return h.max
}
