package loadctl

import (
	"math"
	"time"
)

// Horizon is the time constant of the averages that give the load an
// admitted request brings: long enough to hold several of the longest
// jobs, so that rare, long jobs are weighed right.
const Horizon = 10 * time.Second

// Meter turns a member's raw load readings, taken often, and its counts of
// admitted and shed requests into the sample it publishes each Period. It
// is not safe for concurrent use.
//
// The signal is the mean of the period's readings. The demand adds the
// work the period's shed requests would have brought. By Little's law the
// load that one admitted request per second brings is the signal over the
// admitted rate, both averaged over Horizon (so a period that admits
// nothing still has one); the shed rate times it is the load NORMAL would
// have let in besides. Only periods whose signal is at most 1 feed the
// averages: above it requests queue, and the time they wait would count
// as work (once a queue ten times the capacity made each request weigh
// twenty times its job). Until such a period has come, every period
// feeds them.
type Meter struct {
	sum float64
	n   int

	at             time.Time // the last Sample, or the start
	admitted, shed int64     // the counts at it

	avgSignal, avgRate float64 // moving averages over Horizon
	perReq             float64 // avgSignal / avgRate, when enough was admitted; 0 until then
	unqueued           bool    // a period at most 1 has fed the averages
}

// NewMeter returns a Meter that starts counting at now, with no request
// admitted or shed yet.
func NewMeter(now time.Time) *Meter { return &Meter{at: now} }

// Read adds a raw reading; one that CheckSignal refuses is dropped.
func (m *Meter) Read(v float64) {
	if CheckSignal(v) != nil {
		return
	}
	m.sum += v
	m.n++
}

// Sample ends the period at now with the counts of requests admitted and
// shed so far (totals since the Meter started), and returns its signal and
// demand, or ok false when the period had no valid reading.
func (m *Meter) Sample(now time.Time, admitted, shed int64) (signal, demand float64, ok bool) {
	dt := now.Sub(m.at).Seconds()
	da, ds := admitted-m.admitted, shed-m.shed
	m.at, m.admitted, m.shed = now, admitted, shed
	n, sum := m.n, m.sum
	m.n, m.sum = 0, 0
	if n == 0 {
		return 0, 0, false
	}
	signal = sum / float64(n)
	if dt <= 0 {
		return signal, signal, true
	}
	if signal <= 1 || !m.unqueued {
		if signal <= 1 && !m.unqueued {
			m.unqueued, m.avgSignal, m.avgRate = true, 0, 0 // start over without the queued periods
		}
		w := 1 - math.Exp(-dt/Horizon.Seconds())
		m.avgSignal += w * (signal - m.avgSignal)
		m.avgRate += w * (float64(da)/dt - m.avgRate)
		if m.avgRate*Horizon.Seconds() >= 1 && m.avgSignal > 0 {
			// At least about one request admitted over the horizon.
			m.perReq = m.avgSignal / m.avgRate
		}
	}
	demand = signal
	if ds > 0 {
		demand = min(signal+float64(ds)/dt*m.perReq, MaxSignal)
	}
	return signal, demand, true
}
