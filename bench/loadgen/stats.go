package main

import (
	"net/http"
	"time"
)

// outcome is how one request ended.
type outcome uint8

// The outcomes, one per column of the status table.
const (
	outcomeOK           outcome = iota // 200: admitted
	outcomeUnauthorized                // 401: key unknown to the node
	outcomeLimited                     // 429: over the limit
	outcomeClientError                 // any other 4xx
	outcomeServerError                 // 5xx
	outcomeOther                       // any other status: 1xx, 2xx but 200, 3xx
	outcomeTransport                   // no response: refused, reset, timed out
	outcomeCanceled                    // the run was interrupted while it was in flight
	numOutcomes
)

// classify returns the outcome of a response with the given status code.
func classify(status int) outcome {
	switch {
	case status == http.StatusOK:
		return outcomeOK
	case status == http.StatusUnauthorized:
		return outcomeUnauthorized
	case status == http.StatusTooManyRequests:
		return outcomeLimited
	case status >= 400 && status < 500:
		return outcomeClientError
	case status >= 500 && status < 600:
		return outcomeServerError
	}
	return outcomeOther
}

// responded reports whether a response came back, whatever its status.
func (o outcome) responded() bool { return o < outcomeTransport }

// decided reports whether the limiter answered: admitted or refused.
func (o outcome) decided() bool { return o == outcomeOK || o == outcomeLimited }

// counts holds a count per outcome.
type counts [numOutcomes]uint64

// total returns the sum of all counts.
func (c *counts) total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// add adds o to c.
func (c *counts) add(o *counts) {
	for i, v := range o {
		c[i] += v
	}
}

// result is what one request taught.
type result struct {
	// tier is the index of the key's tier in the plan.
	tier int
	// accuracy is the index of the key in plan.accuracy, or -1.
	accuracy int
	target   string
	outcome  outcome
	// latency is from sending the request to reading the whole body; only
	// meaningful when outcome.responded().
	latency time.Duration
	// limit and remaining are X-RateLimit-Limit and X-RateLimit-Remaining,
	// -1 when absent or not a number.
	limit     int
	remaining int
	// err is the transport error, for outcomeTransport.
	err string
}

// Bounds on what stats remembers, so memory stays bounded however long a
// run is and however many addresses DNS returns.
const (
	// maxTargets is the number of targets counted one by one; the rest
	// are counted together under otherTargets.
	maxTargets = 1024
	// maxErrorKinds is the number of distinct transport error messages
	// kept; the rest are counted under otherErrors.
	maxErrorKinds = 16
	// maxLimitsSeen is the number of distinct X-RateLimit-Limit values
	// kept per accuracy key.
	maxLimitsSeen = 8
)

// Names under which stats counts what goes past its bounds.
const (
	otherTargets = "(other targets)"
	otherErrors  = "(other errors)"
)

// stats aggregates results: counts by outcome overall, per tier and per
// target, latencies of the requests that got a response, transport errors
// by message, and for each accuracy key its exact counts and the limits
// its responses carried. Its memory is bounded whatever the number of
// results. It is not safe for concurrent use; merge combines the stats of
// several goroutines.
type stats struct {
	outcomes counts
	latency  *histogram
	tiers    []counts
	targets  map[string]*counts
	keys     []keyStats
	// missingLimit counts 200 and 429 responses without a numeric
	// X-RateLimit-Limit, which the contract promises on both.
	missingLimit uint64
	errors       map[string]uint64
}

// keyStats is what happened to one accuracy key.
type keyStats struct {
	outcomes counts
	// limits holds the distinct X-RateLimit-Limit values seen, in the
	// order first seen, at most maxLimitsSeen.
	limits []int
	// maxRemaining is the largest X-RateLimit-Remaining seen, -1 if none.
	// A key nobody used before shows limit-1 on its first admission.
	maxRemaining int
}

// newStats returns empty stats for a plan with nTiers tiers and nAccuracy
// accuracy keys.
func newStats(nTiers, nAccuracy int) *stats {
	s := &stats{
		latency: newHistogram(),
		tiers:   make([]counts, nTiers),
		targets: make(map[string]*counts),
		keys:    make([]keyStats, nAccuracy),
		errors:  make(map[string]uint64),
	}
	for i := range s.keys {
		s.keys[i].maxRemaining = -1
	}
	return s
}

// record adds one result.
func (s *stats) record(r result) {
	s.outcomes[r.outcome]++
	s.tiers[r.tier][r.outcome]++
	s.target(r.target)[r.outcome]++
	if r.outcome.responded() {
		s.latency.Record(r.latency)
	}
	if r.outcome.decided() && r.limit < 0 {
		s.missingLimit++
	}
	if r.outcome == outcomeTransport {
		s.addError(r.err, 1)
	}
	if r.accuracy < 0 {
		return
	}
	k := &s.keys[r.accuracy]
	k.outcomes[r.outcome]++
	if !r.outcome.decided() {
		return
	}
	if r.limit >= 0 {
		k.addLimit(r.limit)
	}
	k.maxRemaining = max(k.maxRemaining, r.remaining)
}

// target returns the counts of the target called name, creating them
// while there are fewer than maxTargets.
func (s *stats) target(name string) *counts {
	c, ok := s.targets[name]
	if ok {
		return c
	}
	if len(s.targets) >= maxTargets {
		name = otherTargets
		if c, ok = s.targets[name]; ok {
			return c
		}
	}
	c = new(counts)
	s.targets[name] = c
	return c
}

// addError counts n transport errors with message msg.
func (s *stats) addError(msg string, n uint64) {
	if _, ok := s.errors[msg]; !ok && len(s.errors) >= maxErrorKinds {
		msg = otherErrors
	}
	s.errors[msg] += n
}

// addLimit remembers limit if it is new and there is room.
func (k *keyStats) addLimit(limit int) {
	for _, l := range k.limits {
		if l == limit {
			return
		}
	}
	if len(k.limits) < maxLimitsSeen {
		k.limits = append(k.limits, limit)
	}
}

// merge adds everything o counted to s. Both must have been made for the
// same plan.
func (s *stats) merge(o *stats) {
	s.outcomes.add(&o.outcomes)
	s.latency.Merge(o.latency)
	for i := range o.tiers {
		s.tiers[i].add(&o.tiers[i])
	}
	for name, c := range o.targets {
		s.target(name).add(c)
	}
	s.missingLimit += o.missingLimit
	for msg, n := range o.errors {
		s.addError(msg, n)
	}
	for i := range o.keys {
		k, ok := &s.keys[i], &o.keys[i]
		k.outcomes.add(&ok.outcomes)
		for _, l := range ok.limits {
			k.addLimit(l)
		}
		k.maxRemaining = max(k.maxRemaining, ok.maxRemaining)
	}
}
