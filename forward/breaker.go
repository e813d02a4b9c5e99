package forward

import (
	"sync"
	"time"
)

// Default values for BreakerConfig fields left at zero.
const (
	DefaultBreakerFailures = 3
	DefaultBreakerCooldown = time.Second
)

// BreakerConfig configures a Breaker. Zero values mean the defaults.
type BreakerConfig struct {
	// Failures is how many failures in a row open the breaker. Default 3.
	Failures int
	// Cooldown is how long the breaker stays open before it lets one probe
	// through, and how long a probe may stay unreported before another is
	// let through. Default 1s.
	Cooldown time.Duration
}

// WithDefaults returns c with zero or negative fields set to their
// defaults: the config a Breaker made with c uses.
func (c BreakerConfig) WithDefaults() BreakerConfig {
	if c.Failures <= 0 {
		c.Failures = DefaultBreakerFailures
	}
	if c.Cooldown <= 0 {
		c.Cooldown = DefaultBreakerCooldown
	}
	return c
}

// BreakerState is the state of a Breaker.
type BreakerState int

// The states of a Breaker.
const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = iota
	// BreakerOpen lets no call through until the cooldown has passed.
	BreakerOpen
	// BreakerHalfOpen lets one probe through and waits for its outcome.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Breaker is a circuit breaker for calls to one peer. It is a plain state
// machine: it never reads the clock or starts a timer, so every method that
// depends on time takes now.
//
// Closed, it lets every call through and counts failures in a row; at
// Failures it opens. Open, it refuses calls until Cooldown has passed since
// it opened, then turns half-open and lets exactly one probe through. The
// probe's Success closes it; its Failure opens it for another Cooldown. A
// probe that never reports (its caller gave up) does not wedge the breaker:
// after another Cooldown the next call becomes the probe.
//
// Success closes the breaker from any state, since any answer shows the
// peer is alive again, even one to a call made before the breaker opened.
//
// A Breaker is safe for concurrent use. The zero value is a closed Breaker
// with the default config.
type Breaker struct {
	cfg BreakerConfig

	// mu guards the fields below.
	mu       sync.Mutex
	failures int       // failures in a row while closed
	open     bool      // open or half-open
	until    time.Time // open: when it turns half-open
	probing  bool      // half-open: a probe is out
	probeAt  time.Time // half-open: when the probe went out
}

// NewBreaker returns a closed Breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	return &Breaker{cfg: cfg.WithDefaults()}
}

// Allow reports whether a call may go to the peer at now. In the half-open
// state a true answer makes the caller the probe, which must report with
// Success or Failure.
func (b *Breaker) Allow(now time.Time) bool {
	cfg := b.cfg.WithDefaults()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state(now) {
	case BreakerClosed:
		return true
	case BreakerOpen:
		return false
	}
	if b.probing && now.Before(b.probeAt.Add(cfg.Cooldown)) {
		return false
	}
	b.probing = true
	b.probeAt = now
	return true
}

// Success records a call that the peer answered; it closes the breaker.
func (b *Breaker) Success() {
	b.mu.Lock()
	b.failures = 0
	b.open = false
	b.probing = false
	b.mu.Unlock()
}

// Failure records a call that failed at now, and reports whether this
// failure opened the breaker. Failures that arrive while the breaker is
// open (from calls made before it opened) change nothing.
func (b *Breaker) Failure(now time.Time) bool {
	cfg := b.cfg.WithDefaults()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state(now) {
	case BreakerOpen:
		return false
	case BreakerHalfOpen:
		if !b.probing {
			// A late failure from before the breaker opened; wait for the
			// probe.
			return false
		}
	default:
		b.failures++
		if b.failures < cfg.Failures {
			return false
		}
	}
	b.failures = 0
	b.open = true
	b.until = now.Add(cfg.Cooldown)
	b.probing = false
	return true
}

// State returns the breaker's state at now. It changes nothing.
func (b *Breaker) State(now time.Time) BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state(now)
}

// state is State with b.mu held.
func (b *Breaker) state(now time.Time) BreakerState {
	switch {
	case !b.open:
		return BreakerClosed
	case now.Before(b.until):
		return BreakerOpen
	default:
		return BreakerHalfOpen
	}
}
