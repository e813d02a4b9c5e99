// Package loadctl decides when the cluster goes DEGRADED and back by
// itself, from the load each member measures.
//
// Each member measures its load signal (how saturated the work behind it
// is, 1.0 being full) and its demand: the signal plus the work that
// DEGRADED refuses and NORMAL would let in (Meter). Gossip carries both.
// Every member watches the cluster's demand, the mean over the members
// whose sample is fresh (Control); a member whose sample is stale is
// unknown and left out, never counted as idle. The cluster goes DEGRADED
// when the demand stays at or above Settings.High for Settings.UpHold, and
// back to NORMAL when it stays at or below Settings.Low for
// Settings.DownHold. Weighing demand, not the signal alone, is what keeps
// the loop from flapping: once DEGRADED refuses a surge the work drains,
// but the refused demand is still counted, so the cluster stays DEGRADED
// until the surge itself is over.
//
// The switch is an ordinary health write made by one member, the writer
// (Writer), so the cluster writes once; package health orders it and
// package cluster spreads it. Hold times are measured on the monotonic
// clock, so a wall clock that jumps moves no decision.
package loadctl

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tierlimit/tierlimit/health"
)

// Defaults of Settings; docs/design.md argues them from the measurement.
const (
	DefaultHigh     = 1.0
	DefaultLow      = 0.75
	DefaultUpHold   = time.Second
	DefaultDownHold = 15 * time.Second
	DefaultStale    = 2 * time.Second
	// Period is how often a member samples and publishes its load.
	Period = 250 * time.Millisecond
	// Reads is how many raw readings of the signal make one sample.
	Reads = 10
)

// slack is how much short of a hold the samples may fall and still meet
// it: a sample comes every Period, give or take a ticker's jitter, so a
// hold of 4 periods must be met by the 4th sample, not the 5th.
const slack = Period / Reads

// MaxSignal is the largest signal or demand a member reports: ten times
// full. Larger, negative or not-a-number values are refused.
const MaxSignal = 10.0

// Settings are the marks and hold times of the switch.
type Settings struct {
	// High is the demand at or above which the cluster goes DEGRADED,
	// once it has held UpHold.
	High float64
	// Low is the demand at or below which the cluster goes back to NORMAL,
	// once it has held DownHold. Below High.
	Low float64
	// UpHold and DownHold are how long the demand must stay past a mark.
	UpHold, DownHold time.Duration
	// Stale is how old a member's sample may be before it counts as
	// unknown.
	Stale time.Duration
}

// WithDefaults returns s with every zero field at its default.
func (s Settings) WithDefaults() Settings {
	if s.High == 0 {
		s.High = DefaultHigh
	}
	if s.Low == 0 {
		s.Low = min(DefaultLow, s.High*DefaultLow)
	}
	if s.UpHold == 0 {
		s.UpHold = DefaultUpHold
	}
	if s.DownHold == 0 {
		s.DownHold = DefaultDownHold
	}
	if s.Stale == 0 {
		s.Stale = DefaultStale
	}
	return s
}

// FieldError names the setting that is wrong.
type FieldError struct {
	Field string // "High", "Low", "UpHold", "DownHold" or "Stale"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Check returns a *FieldError for a setting the switch cannot run with.
func (s Settings) Check() error {
	switch {
	case math.IsNaN(s.High) || s.High <= 0 || s.High > MaxSignal:
		return &FieldError{"High", fmt.Sprintf("%v is not above 0 and at most %v", s.High, MaxSignal)}
	case math.IsNaN(s.Low) || s.Low < 0 || s.Low >= s.High:
		return &FieldError{"Low", fmt.Sprintf("%v is not from 0 to below the high mark %v", s.Low, s.High)}
	case s.UpHold < 0 || s.UpHold > time.Hour:
		return &FieldError{"UpHold", fmt.Sprintf("%v is not from 0 to 1h", s.UpHold)}
	case s.DownHold < 0 || s.DownHold > time.Hour:
		return &FieldError{"DownHold", fmt.Sprintf("%v is not from 0 to 1h", s.DownHold)}
	case s.Stale < Period || s.Stale > time.Minute:
		return &FieldError{"Stale", fmt.Sprintf("%v is not from %v to 1m", s.Stale, Period)}
	}
	return nil
}

// ErrBadSignal is returned for a signal that is not a number from 0 to
// MaxSignal.
var ErrBadSignal = errors.New("load signal must be a number from 0 to 10")

// CheckSignal returns ErrBadSignal, with the value, unless v is a number
// from 0 to MaxSignal.
func CheckSignal(v float64) error {
	if math.IsNaN(v) || v < 0 || v > MaxSignal {
		return fmt.Errorf("%w, not %v", ErrBadSignal, v)
	}
	return nil
}

// Sample is one member's last load sample.
type Sample struct {
	Name   string
	Signal float64
	Demand float64
	Age    time.Duration
}

// Writer returns the member that makes the switch's writes: the first by
// name of those that sent a sample, fresh or not, and are alive. Every
// member that sees the same members picks the same one; when it dies the
// next takes over, its hold timers running already.
func Writer(samples []Sample) string {
	w := ""
	for _, s := range samples {
		if w == "" || s.Name < w {
			w = s.Name
		}
	}
	return w
}

// Reading is the cluster's load as one member sees it.
type Reading struct {
	// Saturation and Demand are the means of Signal and Demand over the
	// members whose sample is fresh; zero when Known is 0.
	Saturation float64
	Demand     float64
	// Known counts the members whose sample is fresh; Unknown those whose
	// sample is stale.
	Known, Unknown int
}

// Enough reports whether the reading may move the state: at least one
// member known, and no more unknown than known.
func (r Reading) Enough() bool { return r.Known > 0 && r.Known >= r.Unknown }

// Read returns the reading of samples with Settings.Stale.
func Read(samples []Sample, stale time.Duration) Reading {
	var r Reading
	for _, s := range samples {
		if s.Age > stale {
			r.Unknown++
			continue
		}
		r.Known++
		r.Saturation += s.Signal
		r.Demand += s.Demand
	}
	if r.Known > 0 {
		r.Saturation /= float64(r.Known)
		r.Demand /= float64(r.Known)
	}
	return r
}

// Decision is what Control.Observe concludes.
type Decision struct {
	// Switch reports whether the state should change to To.
	Switch bool
	To     health.Status
	// Why says what made it, for people (health.State.Why).
	Why string
}

// Control keeps the hold timers of the switch. Every member runs one, so
// that the member that becomes the writer has its timers running already.
// It is not safe for concurrent use.
type Control struct {
	s Settings
	// since is when the current condition began: the demand at or above
	// High (above), at or below Low (below), or too little known
	// (unknown); zero when it does not hold.
	above, below, unknown time.Time
	last                  Reading
}

// NewControl returns a Control with s (zero fields at their defaults).
func NewControl(s Settings) *Control { return &Control{s: s.WithDefaults()} }

// Settings returns the settings in force.
func (c *Control) Settings() Settings { return c.s }

// Last returns the reading Observe took last.
func (c *Control) Last() Reading { return c.last }

// Observe takes the members' samples at now (a reading of the monotonic
// clock: only differences between nows count) with the cluster in status,
// and returns whether the state should switch.
//
// A reading with too little known (Reading.Enough) stops the hold timers;
// if that lasts DownHold in DEGRADED, the cluster goes back to NORMAL: with
// no load signal to go by, it runs on its configured limits, as a cluster
// without one does, rather than shedding free traffic for ever.
func (c *Control) Observe(now time.Time, status health.Status, samples []Sample) Decision {
	r := Read(samples, c.s.Stale)
	c.last = r
	if !r.Enough() {
		c.above, c.below = time.Time{}, time.Time{}
		c.unknown = track(c.unknown, true, now)
		if status == health.Degraded && now.Sub(c.unknown)+slack >= c.s.DownHold {
			return Decision{Switch: true, To: health.Normal, Why: fmt.Sprintf(
				"auto: load unknown for %v (%d of %d members fresh): back to the configured limits",
				roundHold(now.Sub(c.unknown)), r.Known, r.Known+r.Unknown)}
		}
		return Decision{}
	}
	c.unknown = time.Time{}
	c.above = track(c.above, r.Demand >= c.s.High, now)
	c.below = track(c.below, r.Demand <= c.s.Low, now)
	switch {
	case status == health.Normal && !c.above.IsZero() && now.Sub(c.above)+slack >= c.s.UpHold:
		return Decision{Switch: true, To: health.Degraded, Why: fmt.Sprintf(
			"auto: demand %.2f >= high %.2f for %v (saturation %.2f, %d of %d members known)",
			r.Demand, c.s.High, roundHold(now.Sub(c.above)), r.Saturation, r.Known, r.Known+r.Unknown)}
	case status == health.Degraded && !c.below.IsZero() && now.Sub(c.below)+slack >= c.s.DownHold:
		return Decision{Switch: true, To: health.Normal, Why: fmt.Sprintf(
			"auto: demand %.2f <= low %.2f for %v (saturation %.2f, %d of %d members known)",
			r.Demand, c.s.Low, roundHold(now.Sub(c.below)), r.Saturation, r.Known, r.Known+r.Unknown)}
	}
	return Decision{}
}

// track returns when a condition that holds at now began: since if it held
// already, now if it begins (or if now is before since: a clock set back
// restarts the hold rather than stalling it), zero if it does not hold.
func track(since time.Time, holds bool, now time.Time) time.Time {
	switch {
	case !holds:
		return time.Time{}
	case since.IsZero() || now.Before(since):
		return now
	}
	return since
}

func roundHold(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
