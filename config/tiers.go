// Package config loads the tier table of the rate limiter, tiers.json: the
// counting window, the limits of each tier, and which API key belongs to
// which tier.
//
// Load and Parse validate the whole file and fill defaults before they
// return, so a *Tiers that exists is a good one: every tier has
// 0 < Degraded <= Limit <= Burst, and every key maps to a tier that exists.
// A bad file is rejected with a message that names the field by its JSON
// path, such as
//
//	tiers.free.burst: 5 is less than limit 10
//
// The package only reads configuration. Counting belongs to package bucket,
// the NORMAL/DEGRADED state to package health; the caller picks the limit in
// force with Tier.LimitFor.
//
// The file looks like this; burst and degraded default to limit:
//
//	{
//	  "window_seconds": 60,
//	  "tiers": {
//	    "free": {"limit": 10, "burst": 20, "degraded": 2},
//	    "pro":  {"limit": 100, "burst": 150}
//	  },
//	  "api_keys": {"free-demo-1": "free", "pro-demo-1": "pro"}
//	}
//
// A tier may also limit what its requests cost per window, in a unit the
// file names once (cost_unit), and how many of them run at once; each has
// its own limit, burst and degraded, and a cost its default_estimate, what
// a request that brings no estimate reserves (0 unless given):
//
//	{
//	  "window_seconds": 60,
//	  "cost_unit": "audio-seconds",
//	  "tiers": {
//	    "free": {"limit": 10, "burst": 20, "degraded": 2,
//	             "cost": {"limit": 300, "burst": 600, "degraded": 60, "default_estimate": 30},
//	             "concurrency": {"limit": 1, "burst": 2}}
//	  }
//	}
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"
)

// maxFileSize is the largest file Load reads, in bytes.
const maxFileSize = 16 << 20

// Tier is one tier's limits, in requests per window. Limit is the SLA, kept
// in DEGRADED for paying tiers; Burst (>= Limit) is allowed while the system
// is NORMAL; Degraded (<= Limit) is allowed while it is DEGRADED. A Tier is
// a value: copying it is cheap and safe.
type Tier struct {
	// Name is the tier's name, the key under "tiers" in the file.
	Name string
	// Limit is the tier's base limit per window. Always positive.
	Limit int
	// Burst is the limit per window in NORMAL. At least Limit; defaults to
	// Limit.
	Burst int
	// Degraded is the limit per window in DEGRADED. Positive and at most
	// Limit; defaults to Limit.
	Degraded int

	// Cost limits what the tier's requests cost per window, in the file's
	// CostUnit; zero when the tier has no "cost".
	Cost Limits
	// CostEstimate is what a request that brings no estimate of its cost
	// reserves ("cost.default_estimate"): 0 unless given, at most
	// Cost.Burst.
	CostEstimate int
	// Concurrency limits how many of the tier's requests run at once, per
	// key; zero when the tier has no "concurrency".
	Concurrency Limits
}

// LimitFor returns the limit in force: Burst when degraded is false,
// Degraded when it is true.
func (t Tier) LimitFor(degraded bool) int {
	return t.Requests().For(degraded)
}

// Sheddable reports whether DEGRADED cuts the tier's requests below its
// base limit (free's 10 to 2), not just its burst (pro's 150 to 100): its
// requests are the ones an overloaded instance serves last.
func (t Tier) Sheddable() bool { return t.Degraded < t.Limit }

// Requests returns the tier's limits on requests per window.
func (t Tier) Requests() Limits {
	return Limits{Limit: t.Limit, Burst: t.Burst, Degraded: t.Degraded}
}

// Limits are a tier's limits in one dimension (requests, cost per window,
// requests in flight), with the same rules as a tier's own: 0 < Degraded
// <= Limit <= Burst. The zero Limits is a dimension the tier does not
// limit.
type Limits struct {
	Limit, Burst, Degraded int
}

// Set reports whether l limits anything: false for the zero Limits.
func (l Limits) Set() bool { return l.Limit > 0 }

// For returns the limit in force: Burst when degraded is false, Degraded
// when it is true.
func (l Limits) For(degraded bool) int {
	if degraded {
		return l.Degraded
	}
	return l.Burst
}

// Tiers is a validated tier table. It is immutable after Load or Parse
// return it and safe for concurrent use; callers must not change Window. The
// zero value has no tiers and no keys: every lookup misses.
type Tiers struct {
	// Window is the counting window. Positive, at most 24 hours.
	Window time.Duration
	// CostUnit names what a cost counts ("cost_unit"), as RateLimit-Policy's
	// qu says it: set whenever a tier has a cost, and maybe when none has.
	CostUnit string

	tiers map[string]Tier // tier name -> tier
	keys  map[string]Tier // API key -> its tier, resolved once
	names []string        // sorted tier names
	hash  string
}

// Load reads and parses the file at path; see Parse. It refuses files larger
// than 16 MiB. Errors name the path.
func Load(path string) (*Tiers, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load tiers: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load tiers %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("load tiers %s: file is larger than %d bytes", path, maxFileSize)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load tiers %s: %w", path, err)
	}
	return t, nil
}

// Lookup returns the tier of apiKey and reports whether the key is known.
// It is the first implementation of the key store that the HTTP layer
// defines (Lookup(apiKey string) (config.Tier, bool)); a real key store can
// take its place. It does not allocate and is safe for concurrent use.
func (t *Tiers) Lookup(apiKey string) (Tier, bool) {
	tier, ok := t.keys[apiKey]
	return tier, ok
}

// Tier returns the tier called name and reports whether it exists.
func (t *Tiers) Tier(name string) (Tier, bool) {
	tier, ok := t.tiers[name]
	return tier, ok
}

// Names returns the tier names in sorted order. The slice is the caller's.
func (t *Tiers) Names() []string {
	return slices.Clone(t.names)
}

// KeyCount returns the number of API keys.
func (t *Tiers) KeyCount() int {
	return len(t.keys)
}

// Hash returns 16 hex digits of a SHA-256 over a canonical form of the
// window, the tiers (with defaults filled) and the key mapping. Files that
// mean the same thing have the same hash whatever their key order,
// whitespace or omitted defaults; cluster nodes compare it to detect config
// drift. The zero Tiers returns "".
func (t *Tiers) Hash() string {
	return t.hash
}

// hashVersion starts the canonical form, so that a future change of the
// form changes every hash rather than colliding with old ones.
const hashVersion = "tierlimit tiers v1\n"

// computeHash returns the value of Hash for t. The canonical form is one
// line per fact, in sorted order, with names quoted so that no name can
// forge a line.
func (t *Tiers) computeHash() string {
	buf := make([]byte, 0, 64*(len(t.tiers)+len(t.keys)+2))
	buf = append(buf, hashVersion...)
	buf = append(buf, "window_ns "...)
	buf = strconv.AppendInt(buf, int64(t.Window), 10)
	buf = append(buf, '\n')
	// What came after v1 adds lines only where a file uses it, so that a
	// file without it hashes as before (nodes of both versions agree).
	if t.CostUnit != "" {
		buf = append(buf, "cost_unit "...)
		buf = strconv.AppendQuote(buf, t.CostUnit)
		buf = append(buf, '\n')
	}
	ints := func(prefix, name string, ns ...int) {
		buf = append(buf, prefix...)
		buf = strconv.AppendQuote(buf, name)
		for _, n := range ns {
			buf = append(buf, ' ')
			buf = strconv.AppendInt(buf, int64(n), 10)
		}
		buf = append(buf, '\n')
	}
	for _, name := range t.names {
		tier := t.tiers[name]
		ints("tier ", name, tier.Limit, tier.Burst, tier.Degraded)
		if c := tier.Cost; c.Set() {
			ints("tier_cost ", name, c.Limit, c.Burst, c.Degraded, tier.CostEstimate)
		}
		if c := tier.Concurrency; c.Set() {
			ints("tier_concurrency ", name, c.Limit, c.Burst, c.Degraded)
		}
	}
	keys := make([]string, 0, len(t.keys))
	for k := range t.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		buf = append(buf, "key "...)
		buf = strconv.AppendQuote(buf, k)
		buf = append(buf, ' ')
		buf = strconv.AppendQuote(buf, t.keys[k].Name)
		buf = append(buf, '\n')
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:8])
}
