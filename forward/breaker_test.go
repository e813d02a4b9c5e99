package forward

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// breakerStep is one call on a Breaker at t0+at, and what it should say.
type breakerStep struct {
	at   time.Duration
	op   string // "allow", "success", "failure" or "state"
	want any    // bool for allow and failure, BreakerState for state, nil for success
}

func TestBreakerSteps(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := BreakerConfig{Failures: 3, Cooldown: time.Second}
	tests := []struct {
		name  string
		cfg   BreakerConfig
		steps []breakerStep
	}{
		{"closed lets everything through", cfg, []breakerStep{
			{0, "state", BreakerClosed},
			{0, "allow", true},
			{0, "allow", true},
		}},
		{"opens after Failures in a row", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "allow", true},
			{0, "failure", true},
			{0, "state", BreakerOpen},
			{0, "allow", false},
			{999 * time.Millisecond, "allow", false},
		}},
		{"a success resets the count", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "success", nil},
			{0, "failure", false},
			{0, "failure", false},
			{0, "state", BreakerClosed},
			{0, "failure", true},
		}},
		{"half-open lets exactly one probe through", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "failure", true},
			{time.Second, "state", BreakerHalfOpen},
			{time.Second, "allow", true},
			{time.Second, "allow", false},
			{1500 * time.Millisecond, "allow", false},
			{1500 * time.Millisecond, "state", BreakerHalfOpen},
		}},
		{"a successful probe closes it", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "failure", true},
			{time.Second, "allow", true},
			{time.Second, "success", nil},
			{time.Second, "state", BreakerClosed},
			{time.Second, "allow", true},
			{time.Second, "allow", true},
		}},
		{"a failed probe opens it for another cooldown", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "failure", true},
			{2 * time.Second, "allow", true},
			{2 * time.Second, "failure", true},
			{2 * time.Second, "state", BreakerOpen},
			{2*time.Second + 999*time.Millisecond, "allow", false},
			{3 * time.Second, "allow", true},
		}},
		{"a probe that never reports is replaced after a cooldown", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "failure", true},
			{time.Second, "allow", true},
			{1999 * time.Millisecond, "allow", false},
			{2 * time.Second, "allow", true},
			{2 * time.Second, "allow", false},
		}},
		{"late failures while open change nothing", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "failure", true},
			{500 * time.Millisecond, "failure", false},
			{time.Second, "state", BreakerHalfOpen},
			{time.Second, "failure", false}, // no probe is out yet
			{time.Second, "allow", true},
		}},
		{"a late success while open closes it", cfg, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "failure", true},
			{100 * time.Millisecond, "success", nil},
			{100 * time.Millisecond, "state", BreakerClosed},
			{100 * time.Millisecond, "allow", true},
		}},
		{"zero config means 3 failures and 1s", BreakerConfig{}, []breakerStep{
			{0, "failure", false},
			{0, "failure", false},
			{0, "failure", true},
			{999 * time.Millisecond, "allow", false},
			{time.Second, "allow", true},
		}},
		{"one failure opens with Failures 1", BreakerConfig{Failures: 1, Cooldown: 10 * time.Millisecond}, []breakerStep{
			{0, "failure", true},
			{9 * time.Millisecond, "allow", false},
			{10 * time.Millisecond, "allow", true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBreaker(tc.cfg)
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				switch s.op {
				case "allow":
					assert.Equal(t, s.want, b.Allow(now), "step %d: Allow(t0+%v)", i, s.at)
				case "failure":
					assert.Equal(t, s.want, b.Failure(now), "step %d: Failure(t0+%v) reports whether it opened", i, s.at)
				case "success":
					b.Success()
				case "state":
					assert.Equal(t, s.want, b.State(now), "step %d: State(t0+%v)", i, s.at)
				default:
					t.Fatalf("step %d: unknown op %q", i, s.op)
				}
			}
		})
	}
}

func TestBreakerZeroValue(t *testing.T) {
	var b Breaker
	t0 := time.Unix(0, 0)
	assert.True(t, b.Allow(t0))
	b.Failure(t0)
	b.Failure(t0)
	assert.True(t, b.Failure(t0), "third Failure on a zero Breaker should open it")
	assert.False(t, b.Allow(t0.Add(time.Second-1)))
	assert.True(t, b.Allow(t0.Add(time.Second)))
}

func TestBreakerStateString(t *testing.T) {
	tests := []struct {
		s    BreakerState
		want string
	}{
		{BreakerClosed, "closed"},
		{BreakerOpen, "open"},
		{BreakerHalfOpen, "half-open"},
		{BreakerState(42), "unknown"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.s.String(), "BreakerState(%d).String()", int(tc.s))
	}
}

func TestBreakerOneProbeUnderContention(t *testing.T) {
	b := NewBreaker(BreakerConfig{Failures: 1, Cooldown: time.Second})
	t0 := time.Unix(0, 0)
	b.Failure(t0)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if b.Allow(t0.Add(time.Second)) {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), allowed.Load(), "16 concurrent Allow in half-open let %d through, want 1", allowed.Load())
}
