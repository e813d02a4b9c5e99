package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWindowOf(t *testing.T) {
	w := time.Minute
	tests := []struct {
		at   time.Duration
		want int
	}{
		{-time.Nanosecond, 0},
		{0, 1},
		{59 * time.Second, 1},
		{time.Minute, 2},
		{150 * time.Second, 3},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, windowOf(t0, w, t0.Add(tt.at)), "windowOf(t0, 1m, t0%+v)", tt.at)
	}
}

func TestCountWindows(t *testing.T) {
	recs := seq(ok(0, "n1", 1), ok(100, "n3", 0), no(200, "n1", 50), lost(300, "n2"),
		ok(60_000, "n1", 5), no(60_100, "n3", 1), step{ms: 60_200, node: "n1", status: 503, remaining: -1, retryAfter: -1, t: -1},
		ok(120_000, "n1", 5)) // a third window, not counted
	ref := []bool{false, true, false, true, true, true, true, true}
	got := countWindows(recs, ref, t0, time.Minute, 2)
	assert.Equal(t, []WindowCount{
		{Window: 1, Offered: 4, Admitted: 2, Refused: 1, NoAnswer: 1, Reference: 2, FirstAdmitted: 0, FirstReference: 100 * time.Millisecond},
		{Window: 2, Offered: 3, Admitted: 1, Refused: 1, Other: 1, Reference: 3, FirstAdmitted: 0, FirstReference: 0},
	}, got)
}

func TestReference(t *testing.T) {
	// Limit 2 a minute: the first two fit, the third not. In the next
	// window the previous two decay: none fits at its start, one at 30 s
	// (ceil(2 × 30/60) + 0 + 1 ≤ 2), and no second at 45 s
	// (ceil(2 × 15/60) + 1 + 1 > 2).
	recs := seq(ok(0, "n1", 0), ok(1000, "n1", 0), ok(2000, "n1", 0),
		ok(60_000, "n1", 0), ok(90_000, "n1", 0), ok(105_000, "n1", 0))
	assert.Equal(t, []bool{true, true, false, false, true, false}, reference(recs, 2, time.Minute))
}
