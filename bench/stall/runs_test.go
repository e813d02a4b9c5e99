package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestLongestRun(t *testing.T) {
	refused := func(recs []Record) func(int) bool {
		return func(i int) bool { return recs[i].Refused() }
	}
	all := func(int) bool { return true }
	tests := []struct {
		name  string
		steps []step
		want  Run // From and To in ms after t0
	}{
		{"none", []step{ok(0, "n1", 1), ok(100, "n3", 0)}, Run{}},
		{"the longer of two", []step{no(0, "n1", 1), ok(100, "n3", 0), no(200, "n1", 1), no(300, "n3", 1), no(400, "n1", 1), ok(500, "n3", 0), no(600, "n1", 1)},
			Run{Refusals: 3, From: t0.Add(200 * time.Millisecond), To: t0.Add(400 * time.Millisecond)}},
		{"a request given up on neither extends nor ends it", []step{no(0, "n1", 1), lost(100, "n2"), no(200, "n3", 1)},
			Run{Refusals: 2, From: t0, To: t0.Add(200 * time.Millisecond)}},
		{"of two as long, the first", []step{no(0, "n1", 1), ok(100, "n3", 0), no(200, "n1", 1)},
			Run{Refusals: 1, From: t0, To: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := seq(tt.steps...)
			assert.Equal(t, tt.want, longestRun(recs, all, refused(recs)), "longestRun(%v)", tt.steps)
		})
	}
}

func TestLongestRunInAndNeedless(t *testing.T) {
	recs := seq(no(0, "n1", 1), no(100, "n3", 1), no(200, "n1", 1), no(300, "n3", 1), no(400, "n1", 1))
	ref := []bool{true, true, false, true, true}
	// Only [100 ms, 500 ms): 100 and the needless 300, 400; the 429 at
	// 200, which the reference refuses too, ends a needless run.
	got := longestRun(recs, sentIn(recs, t0.Add(100*time.Millisecond), t0.Add(500*time.Millisecond)), needless(recs, ref))
	assert.Equal(t, Run{Refusals: 2, From: t0.Add(300 * time.Millisecond), To: t0.Add(400 * time.Millisecond)}, got)
	assert.Equal(t, 100*time.Millisecond, got.Span())
}
