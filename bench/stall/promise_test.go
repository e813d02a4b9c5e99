package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// t0 is the start of every test's first window.
var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

// step is one request of a test sequence: sent at ms after t0, answered
// 1 ms later by node with status (0: no answer, given up 3 s later), and
// the rate-limit fields that matter to the check (-1: absent).
type step struct {
	ms         int
	node       string
	status     int
	remaining  int
	retryAfter int
	t          int // RateLimit's t; -1 for none
}

// seq turns steps into records, as session.records sorts them.
func seq(steps ...step) []Record {
	out := make([]Record, len(steps))
	for i, s := range steps {
		sent := t0.Add(time.Duration(s.ms) * time.Millisecond)
		r := Record{Variant: "others", Key: "pro", Seq: i, Node: s.node, Sent: sent, Done: sent.Add(time.Millisecond), Status: s.status, H: noHeaders}
		if s.status == 0 {
			r.Done, r.Err = sent.Add(3*time.Second), "timeout"
		} else {
			r.H = Headers{Limit: 150, Remaining: s.remaining, Reset: r.Done.Unix() + 60, RetryAfter: s.retryAfter,
				Policy: `"pro";q=150;w=60`, RateLimit: fmt.Sprintf(`"pro";r=%d`, s.remaining)}
			if s.retryAfter >= 0 {
				r.H.Reset = r.Done.Unix() + int64(s.retryAfter)
			}
			if s.t >= 0 {
				r.H.RateLimit += fmt.Sprintf(";t=%d", s.t)
			}
		}
		out[i] = r
	}
	return out
}

func ok(ms int, node string, remaining int) step { return step{ms, node, 200, remaining, -1, -1} }
func no(ms int, node string, retryAfter int) step {
	return step{ms, node, 429, 0, retryAfter, retryAfter}
}
func lost(ms int, node string) step { return step{ms, node, 0, -1, -1, -1} }

func TestCheckRetry(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  RetryCheck
	}{
		{
			name:  "kept: the first request after the moment is admitted",
			steps: []step{no(0, "n1", 2), no(1000, "n3", 1), ok(2100, "n1", 0)},
			want:  RetryCheck{Index: 0, Outcome: RetryKept},
		},
		{
			name:  "broken: the first request after the moment is refused, at another node",
			steps: []step{no(0, "n1", 1), no(500, "n3", 1), no(1100, "n3", 1), ok(4100, "n1", 0)},
			want:  RetryCheck{Index: 0, Outcome: RetryBroken, OtherNode: true, Late: 4100*time.Millisecond - 1001*time.Millisecond},
		},
		{
			name:  "broken and never admitted again",
			steps: []step{no(0, "n1", 1), no(1100, "n1", 1)},
			want:  RetryCheck{Index: 0, Outcome: RetryBroken, Late: -1},
		},
		{
			name:  "a request the client gave up on tests nothing",
			steps: []step{no(0, "n1", 1), lost(1100, "n2"), ok(1200, "n3", 3)},
			want:  RetryCheck{Index: 0, Outcome: RetryKept},
		},
		{
			name:  "early: admitted 3.8 s before the moment, beyond rounding",
			steps: []step{no(0, "n1", 5), ok(1200, "n3", 3)},
			want:  RetryCheck{Index: 0, Outcome: RetryEarly, Excess: 5001*time.Millisecond - 1200*time.Millisecond, BeyondRounding: true},
		},
		{
			name:  "early within the rounding",
			steps: []step{no(0, "n1", 2), ok(1500, "n3", 3)},
			want:  RetryCheck{Index: 0, Outcome: RetryEarly, Excess: 501 * time.Millisecond},
		},
		{
			name:  "a request in flight with the 429 does not count",
			steps: []step{no(0, "n1", 1), ok(0, "n3", 3), no(1100, "n3", 1)},
			want:  RetryCheck{Index: 0, Outcome: RetryBroken, OtherNode: true, Late: -1},
		},
		{
			name:  "early by almost the whole wait",
			steps: []step{no(0, "n1", 30), ok(100, "n1", 0)},
			want:  RetryCheck{Index: 0, Outcome: RetryEarly, Excess: 30001*time.Millisecond - 100*time.Millisecond, BeyondRounding: true},
		},
		{
			name:  "untested",
			steps: []step{no(0, "n1", 30), no(100, "n1", 30)},
			want:  RetryCheck{Index: 0, Outcome: RetryUntested},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkRetry(seq(tt.steps...))
			if assert.NotEmpty(t, got) {
				assert.Equal(t, tt.want, got[0], "checkRetry(%v)[0]", tt.steps)
			}
		})
	}
}

func TestCheckRetryJudgesEvery429(t *testing.T) {
	got := checkRetry(seq(ok(0, "n1", 0), no(100, "n3", 1), no(200, "n1", 1), ok(1300, "n3", 0)))
	assert.Len(t, got, 2)
	for _, c := range got {
		assert.Equal(t, RetryKept, c.Outcome, "checkRetry: the 429 at %d", c.Index)
	}
}

func TestCheckRemaining(t *testing.T) {
	w := time.Minute
	tests := []struct {
		name  string
		steps []step
		want  RemainingCheck
	}{
		{
			name:  "kept: the next 2 are admitted, the third refused",
			steps: []step{ok(0, "n1", 2), ok(100, "n3", 1), ok(200, "n1", 0), no(300, "n3", 50)},
			want:  RemainingCheck{Index: 0, Promised: 2, Tested: 2},
		},
		{
			name:  "over-stated by 2, refused at the other node",
			steps: []step{ok(0, "n1", 3), no(100, "n3", 1), ok(200, "n1", 0), no(300, "n3", 1)},
			want:  RemainingCheck{Index: 0, Promised: 3, Tested: 3, Refused: 2, Shortfall: 2, OtherNode: true},
		},
		{
			name:  "over-stated at the same node",
			steps: []step{ok(0, "n1", 2), no(100, "n1", 1), no(200, "n3", 1)},
			want:  RemainingCheck{Index: 0, Promised: 2, Tested: 2, Refused: 2, Shortfall: 2},
		},
		{
			name:  "a request in flight that was admitted may have spent one",
			steps: []step{{ms: -5, node: "n2", status: 200, remaining: 0, retryAfter: -1, t: -1}, ok(0, "n1", 1), no(100, "n3", 1)},
			want:  RemainingCheck{Index: 1, Promised: 1, Tested: 1, Refused: 1, Credit: 1},
		},
		{
			name:  "a request given up on may have spent one",
			steps: []step{ok(0, "n1", 2), lost(100, "n2"), ok(200, "n3", 0), no(300, "n1", 1)},
			want:  RemainingCheck{Index: 0, Promised: 2, Tested: 2, Refused: 1, Credit: 1},
		},
		{
			name:  "the window's end stops the test",
			steps: []step{ok(58_000, "n1", 5), ok(58_500, "n3", 4), no(59_100, "n1", 1)},
			want:  RemainingCheck{Index: 0, Promised: 5, Tested: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := seq(tt.steps...)
			if tt.steps[0].ms < 0 {
				recs[0].Done = t0.Add(10 * time.Millisecond) // answered after the 200 at 0
			}
			got := checkRemaining(recs, t0.Add(-time.Second), w)
			var c *RemainingCheck
			for i := range got {
				if got[i].Index == tt.want.Index {
					c = &got[i]
				}
			}
			if assert.NotNil(t, c, "checkRemaining: no check of record %d in %+v", tt.want.Index, got) {
				assert.Equal(t, tt.want, *c, "checkRemaining(%v)", tt.steps)
			}
		})
	}
}

func TestCheckRemainingSkipsZero(t *testing.T) {
	assert.Empty(t, checkRemaining(seq(ok(0, "n1", 0), no(100, "n3", 1)), t0, time.Minute))
}

func TestCheckRefill(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  RefillCheck
	}{
		{
			name:  "held: 1 admitted within t − 1 s after r = 1",
			steps: []step{{0, "n1", 200, 1, -1, 5}, ok(1000, "n3", 0), no(2000, "n1", 3), ok(4500, "n1", 0)},
			want:  RefillCheck{Index: 0, Promised: 1, T: 5, Admitted: 1},
		},
		{
			name: "under-stated by 1",
			steps: []step{{0, "n1", 200, 1, -1, 5}, ok(1000, "n3", 0), no(2000, "n1", 3),
				ok(3500, "n3", 0), ok(4500, "n1", 0)}, // the last is sent after 0 + 5 − 1 s: not judged
			want: RefillCheck{Index: 0, Promised: 1, T: 5, Admitted: 2, Under: 1},
		},
		{
			name:  "under-stated: r = 0 and 3 admitted within t",
			steps: []step{{0, "n1", 200, 0, -1, 60}, ok(100, "n3", 5), ok(200, "n1", 4), ok(300, "n3", 3)},
			want:  RefillCheck{Index: 0, Promised: 0, T: 60, Admitted: 3, Under: 3},
		},
		{
			name:  "t of 1 promises nothing the rounding allows",
			steps: []step{{0, "n1", 200, 0, -1, 1}, ok(100, "n3", 5)},
			want:  RefillCheck{Index: 0, Promised: 0, T: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkRefill(seq(tt.steps...))
			if assert.NotEmpty(t, got) {
				assert.Equal(t, tt.want, got[0], "checkRefill(%v)[0]", tt.steps)
			}
		})
	}
}

func TestCheckRefillSkipsAnswersWithoutT(t *testing.T) {
	assert.Empty(t, checkRefill(seq(ok(0, "n1", 150), ok(100, "n1", 149))))
}

func TestOwnerCount(t *testing.T) {
	w := time.Minute
	t.Run("the first admitted probe", func(t *testing.T) {
		recs := seq(ok(0, "n1", 9), ok(100, "n3", 8), no(200, "n1", 1), ok(300, "n2", 140), ok(400, "n2", 139))
		recs[3].Probe, recs[4].Probe = true, true // the owner says 150 − 140 = 10 counted; 3 received
		got, has := ownerCount(recs, t0, w)
		assert.True(t, has)
		assert.Equal(t, OwnerCount{Probe: 3, Counted: 10, Received: 3, Extra: 7}, got)
	})
	t.Run("only the probe's window counts", func(t *testing.T) {
		recs := seq(ok(0, "n1", 9), ok(61_000, "n2", 147))
		recs[1].Probe = true
		got, _ := ownerCount(recs, t0, w)
		assert.Equal(t, OwnerCount{Probe: 1, Counted: 3, Received: 1, Extra: 2}, got)
	})
	t.Run("every probe refused: at least the limit", func(t *testing.T) {
		recs := seq(ok(0, "n1", 0), no(100, "n2", 50))
		recs[1].Probe = true
		got, has := ownerCount(recs, t0, w)
		assert.True(t, has)
		assert.Equal(t, OwnerCount{Probe: -1, Counted: 150, Received: 1, Extra: 149}, got)
	})
	t.Run("no probe", func(t *testing.T) {
		_, has := ownerCount(seq(ok(0, "n1", 0)), t0, w)
		assert.False(t, has)
	})
}
