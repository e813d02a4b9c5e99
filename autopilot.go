package tierlimit

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
	"github.com/tierlimit/tierlimit/loadctl"
)

// maxShedKeys bounds the keys whose shed requests are counted at once.
const maxShedKeys = 100_000

// autopilot is this node's part of the automatic switch (package loadctl):
// it reads the node's load signal, counts the requests admitted and those
// DEGRADED refuses, publishes the samples, and, when this node is the
// writer, makes the switch's health writes.
type autopilot struct {
	l        *Limiter
	settings loadctl.Settings

	admitted atomic.Int64 // requests admitted, ever
	shed     shedCounter

	// reported is the last load an app behind the node POSTed (nil: none).
	reported atomic.Pointer[report]
	// refused counts readings of Config.LoadSignal that were not a
	// number from 0 to 10; warn limits their log lines to one a second.
	refused  atomic.Uint64
	lastWarn time.Time // read and written by run's goroutine only

	// own is this node's last sample, for a node without a cluster.
	own  loadctl.Sample
	ownT time.Time

	// view is what the last period saw, for /system/health and the
	// metrics; nil until a member has a load signal.
	view     atomic.Pointer[api.ClusterLoad]
	demand   atomic.Uint64    // float64 bits of this node's last demand
	switches [2]atomic.Uint64 // writes this node made for the switch, by the status written
}

// report is one load report of the app behind the node.
type report struct {
	signal float64
	at     time.Time
}

// autoPilot returns the Limiter's part of the automatic switch, for the
// metrics.
func (l *Limiter) autoPilot() *autopilot { return l.auto }

func newAutopilot(l *Limiter) *autopilot {
	return &autopilot{l: l, settings: l.cfg.autoSettings(),
		shed: shedCounter{keys: bucket.New(bucket.Config{Window: l.window, MaxKeys: maxShedKeys})}}
}

// Report takes a load signal the app behind the node reported (POST
// /system/load): it counts until it is older than the stale age.
func (a *autopilot) Report(signal float64, now time.Time) {
	a.reported.Store(&report{signal: signal, at: now})
}

// read returns the node's raw load signal at now: the largest of the
// requests in flight over Capacity, Config.LoadSignal and a fresh report,
// and whether there is one.
func (a *autopilot) read(now time.Time) (float64, bool) {
	v, ok := 0.0, false
	if ld, has := a.l.Load(); has {
		v, ok = min(ld.Signal, loadctl.MaxSignal), true
	}
	if f := a.l.cfg.LoadSignal; f != nil {
		s := f()
		if err := loadctl.CheckSignal(s); err != nil {
			a.refused.Add(1)
			if now.Sub(a.lastWarn) >= time.Second {
				a.lastWarn = now
				a.l.log.Warn("load signal refused: Config.LoadSignal must return a number from 0 to 10", "err", err)
			}
		} else {
			v, ok = max(v, s), true
		}
	}
	if r := a.reported.Load(); r != nil && now.Sub(r.at) <= a.settings.Stale {
		v, ok = max(v, r.signal), true
	}
	return v, ok
}

// run reads the signal loadctl.Reads times a period and ends a period
// each loadctl.Period, until ctx ends.
func (a *autopilot) run(ctx context.Context) {
	meter := loadctl.NewMeter(time.Now())
	ctl := loadctl.NewControl(a.settings)
	t := time.NewTicker(loadctl.Period / loadctl.Reads)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if v, ok := a.read(now); ok {
			meter.Read(v)
		}
		if i%loadctl.Reads == 0 {
			a.period(now, meter, ctl)
		}
	}
}

// period ends one period at now: it publishes this node's sample, reads
// the cluster's, and makes the switch's write if this node is the writer
// and the state is not pinned.
func (a *autopilot) period(now time.Time, meter *loadctl.Meter, ctl *loadctl.Control) {
	signal, demand, ok := meter.Sample(now, a.admitted.Load(), a.shed.total.Load())
	if ok {
		a.demand.Store(math.Float64bits(demand))
		if a.l.node != nil {
			a.l.node.PublishLoad(signal, demand, now)
		} else {
			a.own, a.ownT = loadctl.Sample{Name: a.l.cfg.NodeName, Signal: signal, Demand: demand}, now
		}
	}
	samples := a.samples(now)
	cur := a.l.health.Current()
	d := ctl.Observe(now, cur.Status, samples)
	writer := loadctl.Writer(samples)
	if len(samples) == 0 {
		// No member has a signal (mode off). A DEGRADED the switch wrote
		// must not outlive every signal: the first alive member by name
		// takes it back to NORMAL after the down hold, as for a load
		// unknown (Control).
		a.view.Store(nil)
		writer = a.firstAlive()
	} else {
		a.view.Store(a.describe(ctl.Last(), writer, samples))
	}
	if !d.Switch || cur.Manual() || writer != a.l.cfg.NodeName {
		return
	}
	// Only over the state the decision was taken on: an operator's pin
	// that came in meanwhile wins.
	s, changed, ok := a.l.health.WriteIf(health.Write{Status: d.To, Why: d.Why}, time.Now(), cur)
	if !ok {
		return
	}
	_, _, err := a.l.saveHealth(s, changed)
	a.switches[d.To].Add(1)
	a.l.log.Warn("health state switched by the cluster's load", "status", s.Status.String(), "why", d.Why,
		"version", s.Version, "changed", changed, "saved", err == nil)
}

// samples returns the members' last samples at now: from gossip in a
// cluster, this node's own alone.
func (a *autopilot) samples(now time.Time) []loadctl.Sample {
	if a.l.node == nil {
		if a.ownT.IsZero() {
			return nil
		}
		s := a.own
		s.Age = now.Sub(a.ownT)
		return []loadctl.Sample{s}
	}
	ms := a.l.node.Loads(now)
	out := make([]loadctl.Sample, len(ms))
	for i, m := range ms {
		out[i] = loadctl.Sample{Name: m.Name, Signal: m.Signal, Demand: m.Demand, Age: m.Age}
	}
	return out
}

// firstAlive returns the first alive member by name, this node alone.
func (a *autopilot) firstAlive() string {
	if a.l.node == nil {
		return a.l.cfg.NodeName
	}
	if ms := a.l.node.Alive(); len(ms) > 0 {
		return ms[0].Name
	}
	return a.l.cfg.NodeName
}

// describe returns the cluster's load as /system/health shows it.
func (a *autopilot) describe(r loadctl.Reading, writer string, samples []loadctl.Sample) *api.ClusterLoad {
	v := &api.ClusterLoad{
		Saturation: r.Saturation, Demand: r.Demand, Known: r.Known, Unknown: r.Unknown, Writer: writer,
		High: a.settings.High, Low: a.settings.Low,
		UpHold: a.settings.UpHold.String(), DownHold: a.settings.DownHold.String(),
		Members: make([]api.MemberLoad, len(samples)),
	}
	for i, s := range samples {
		v.Members[i] = api.MemberLoad{Name: s.Name, Signal: s.Signal, Demand: s.Demand,
			AgeMS: s.Age.Milliseconds(), Fresh: s.Age <= a.settings.Stale}
	}
	return v
}

// Switches returns how many writes this node made for the switch that
// wrote status.
func (a *autopilot) Switches(status health.Status) uint64 { return a.switches[status].Load() }

// Demand returns this node's last demand (0 before its first sample).
func (a *autopilot) Demand() float64 { return math.Float64frombits(a.demand.Load()) }

// ClusterLoad returns the cluster's load as this node last saw it, or nil
// when no member has a load signal.
func (a *autopilot) ClusterLoad() *api.ClusterLoad { return a.view.Load() }

// shedCounter counts the requests DEGRADED refuses that NORMAL would let
// in: a refusal in DEGRADED of a tier whose request limit is lower there,
// at most this node's share of the difference per key and window
// (ceil((burst - degraded) / members)), so a client far over even its
// NORMAL limit adds no demand NORMAL would not admit. The counts per key
// are a bucket.Store's, as a key's hits are, bounded and swept the same
// way.
type shedCounter struct {
	total atomic.Int64
	keys  *bucket.Store
}

// count counts one refusal of key, of tier, at now, with members alive.
func (c *shedCounter) count(key string, tier config.Tier, now time.Time, members int64) {
	room := tier.Burst - tier.Degraded
	if room <= 0 {
		return // DEGRADED sheds nothing of this tier's requests
	}
	m := max(int(members), 1)
	if c.keys.Take(now, key, 1, (room+m-1)/m).Allowed {
		c.total.Add(1)
	}
}
