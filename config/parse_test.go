package config

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name string
		tier string // the tier object
		want Tier
	}{
		{name: "all given", tier: `{"limit":10,"burst":20,"degraded":2}`, want: Tier{Limit: 10, Burst: 20, Degraded: 2}},
		{name: "burst and degraded default to limit", tier: `{"limit":7}`, want: Tier{Limit: 7, Burst: 7, Degraded: 7}},
		{name: "burst defaults to limit", tier: `{"limit":7,"degraded":3}`, want: Tier{Limit: 7, Burst: 7, Degraded: 3}},
		{name: "degraded defaults to limit", tier: `{"limit":7,"burst":9}`, want: Tier{Limit: 7, Burst: 9, Degraded: 7}},
		{name: "equal bounds", tier: `{"limit":5,"burst":5,"degraded":5}`, want: Tier{Limit: 5, Burst: 5, Degraded: 5}},
		{name: "largest values", tier: `{"limit":1000000000,"burst":1000000000}`, want: Tier{Limit: 1e9, Burst: 1e9, Degraded: 1e9}},
		{
			name: "cost and concurrency given",
			tier: `{"limit":10,"burst":20,"degraded":2,"cost":{"limit":300,"burst":600,"degraded":60,"default_estimate":30},"concurrency":{"limit":1,"burst":2,"degraded":1}}`,
			want: Tier{Limit: 10, Burst: 20, Degraded: 2, Cost: Limits{300, 600, 60}, CostEstimate: 30, Concurrency: Limits{1, 2, 1}},
		},
		{
			name: "cost and concurrency default as requests do",
			tier: `{"limit":10,"cost":{"limit":300,"degraded":60},"concurrency":{"limit":4,"burst":5}}`,
			want: Tier{Limit: 10, Burst: 10, Degraded: 10, Cost: Limits{300, 300, 60}, Concurrency: Limits{4, 5, 4}},
		},
		{name: "an estimate of 0", tier: `{"limit":10,"cost":{"limit":300,"default_estimate":0}}`, want: Tier{Limit: 10, Burst: 10, Degraded: 10, Cost: Limits{300, 300, 300}}},
		{name: "an estimate of the whole burst", tier: `{"limit":10,"cost":{"limit":300,"burst":400,"default_estimate":400}}`, want: Tier{Limit: 10, Burst: 10, Degraded: 10, Cost: Limits{300, 400, 300}, CostEstimate: 400}},
		{name: "concurrency alone", tier: `{"limit":10,"concurrency":{"limit":3}}`, want: Tier{Limit: 10, Burst: 10, Degraded: 10, Concurrency: Limits{3, 3, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := `{"window_seconds":60,"cost_unit":"audio-seconds","tiers":{"t":` + tt.tier + `},"api_keys":{"k":"t"}}`
			tiers, err := Parse([]byte(doc))
			require.NoError(t, err, "Parse(%s)", doc)
			tt.want.Name = "t"
			got, ok := tiers.Tier("t")
			require.True(t, ok)
			assert.Equal(t, tt.want, got, "Parse(%s): Tier(%q)", doc, "t")
			got, ok = tiers.Lookup("k")
			require.True(t, ok)
			assert.Equal(t, tt.want, got, "Parse(%s): Lookup(%q)", doc, "k")
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name       string
		doc        string
		wantWindow time.Duration
		wantKeys   int
	}{
		{name: "no api_keys", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}}}`, wantWindow: time.Minute},
		{name: "empty api_keys", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{}}`, wantWindow: time.Minute},
		{name: "one second window", doc: `{"window_seconds":1,"tiers":{"free":{"limit":1}}}`, wantWindow: time.Second},
		{name: "24 hour window", doc: `{"window_seconds":86400,"tiers":{"free":{"limit":1}}}`, wantWindow: 24 * time.Hour},
		{name: "trailing whitespace", doc: "{\"window_seconds\":60,\"tiers\":{\"free\":{\"limit\":1}}}\n\n  ", wantWindow: time.Minute},
		{name: "cost_unit without a cost", doc: `{"window_seconds":60,"cost_unit":"GPU_seconds.v2","tiers":{"free":{"limit":1}}}`, wantWindow: time.Minute},
		{
			name:       "256-byte key",
			doc:        `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"` + strings.Repeat("k", 256) + `":"free"}}`,
			wantWindow: time.Minute,
			wantKeys:   1,
		},
		{
			name:       "tier name with a dot",
			doc:        `{"window_seconds":60,"tiers":{"a.b":{"limit":1}},"api_keys":{"k":"a.b"}}`,
			wantWindow: time.Minute,
			wantKeys:   1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tiers, err := Parse([]byte(tt.doc))
			require.NoError(t, err, "Parse(%s)", tt.doc)
			assert.Equal(t, tt.wantWindow, tiers.Window)
			assert.Equal(t, tt.wantKeys, tiers.KeyCount())
		})
	}
}

// rejectCase is a document Parse must refuse, and what its error must say.
type rejectCase struct {
	name string
	doc  string
	want []string // substrings of the error message
}

// rejectCases returns the bad documents shared by TestParseRejects and the
// seed corpus of FuzzParse.
func rejectCases() []rejectCase {
	longKey := strings.Repeat("k", 257)
	return []rejectCase{
		// Document shape.
		{name: "empty input", doc: ``, want: []string{"empty document"}},
		{name: "whitespace only", doc: "  \n", want: []string{"empty document"}},
		{name: "not JSON", doc: `window_seconds = 60`, want: []string{"invalid JSON at line 1, column 1"}},
		{name: "truncated", doc: `{"window_seconds":60,"tiers":{`, want: []string{"invalid JSON"}},
		{name: "syntax error on line 3", doc: "{\n\"window_seconds\": 60,\n\"tiers\": {,}}", want: []string{"invalid JSON at line 3"}},
		{name: "top level is an array", doc: `[]`, want: []string{"top level: got array, want an object"}},
		{name: "top level is null", doc: `null`, want: []string{"top level: got null"}},
		{name: "trailing object", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}}}{}`, want: []string{"after the top-level object"}},
		{name: "trailing garbage", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}}} x`, want: []string{"after the top-level object"}},
		{name: "trailing brace", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}}}}`, want: []string{"after the top-level object"}},

		// Unknown and repeated fields.
		{name: "unknown top-level field", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}},"windows":3}`, want: []string{"windows: unknown field"}},
		{name: "unknown tier field", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"brust":20}}}`, want: []string{"tiers.free.brust: unknown field"}},
		{name: "unknown field with odd name", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"a b":1}}}`, want: []string{`tiers.free["a b"]: unknown field`}},
		{name: "repeated top-level field", doc: `{"window_seconds":60,"window_seconds":30,"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: given twice"}},
		{name: "repeated tier", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1},"free":{"limit":2}}}`, want: []string{"tiers.free: given twice"}},
		{name: "repeated tier field", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1,"limit":2}}}`, want: []string{"tiers.free.limit: given twice"}},
		{
			name: "repeated key",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1},"pro":{"limit":2}},"api_keys":{"k":"free","k":"pro"}}`,
			want: []string{`api_keys["k"]: given twice`},
		},

		// window_seconds.
		{name: "window missing", doc: `{"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: missing"}},
		{name: "window zero", doc: `{"window_seconds":0,"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: 0 is not positive"}},
		{name: "window negative", doc: `{"window_seconds":-5,"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: -5 is not positive"}},
		{name: "window over 24h", doc: `{"window_seconds":86401,"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: 86401 is more than the maximum 86400"}},
		{name: "window is a string", doc: `{"window_seconds":"60","tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: got string, want a positive integer"}},
		{name: "window is null", doc: `{"window_seconds":null,"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: got null"}},
		{name: "window is fractional", doc: `{"window_seconds":1.5,"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: 1.5 is not an integer"}},
		{name: "window in exponent form", doc: `{"window_seconds":6e1,"tiers":{"free":{"limit":1}}}`, want: []string{"window_seconds: 6e1 is not an integer"}},
		{
			name: "window overflows int64",
			doc:  `{"window_seconds":99999999999999999999,"tiers":{"free":{"limit":1}}}`,
			want: []string{"window_seconds: 99999999999999999999 is more than the maximum 86400"},
		},

		// tiers.
		{name: "tiers missing", doc: `{"window_seconds":60}`, want: []string{"tiers: missing"}},
		{name: "tiers empty", doc: `{"window_seconds":60,"tiers":{}}`, want: []string{"tiers: empty"}},
		{name: "tiers is an array", doc: `{"window_seconds":60,"tiers":[]}`, want: []string{"tiers: got array, want an object"}},
		{name: "tiers is null", doc: `{"window_seconds":60,"tiers":null}`, want: []string{"tiers: got null, want an object"}},
		{name: "tier is a number", doc: `{"window_seconds":60,"tiers":{"free":10}}`, want: []string{"tiers.free: got number, want an object"}},
		{name: "empty tier name", doc: `{"window_seconds":60,"tiers":{"":{"limit":1}}}`, want: []string{`tiers[""]: empty tier name`}},
		{
			name: "tier name too long",
			doc:  `{"window_seconds":60,"tiers":{"` + strings.Repeat("t", 65) + `":{"limit":1}}}`,
			want: []string{"tiers.ttt", "tier name longer than 64 bytes"},
		},

		// limit, burst, degraded.
		{name: "limit missing", doc: `{"window_seconds":60,"tiers":{"free":{"burst":20}}}`, want: []string{"tiers.free.limit: missing"}},
		{name: "limit missing, empty tier", doc: `{"window_seconds":60,"tiers":{"free":{}}}`, want: []string{"tiers.free.limit: missing"}},
		{name: "limit zero", doc: `{"window_seconds":60,"tiers":{"free":{"limit":0}}}`, want: []string{"tiers.free.limit: 0 is not positive"}},
		{name: "limit negative", doc: `{"window_seconds":60,"tiers":{"free":{"limit":-1}}}`, want: []string{"tiers.free.limit: -1 is not positive"}},
		{name: "limit is a string", doc: `{"window_seconds":60,"tiers":{"free":{"limit":"10"}}}`, want: []string{"tiers.free.limit: got string, want a positive integer"}},
		{name: "limit is a boolean", doc: `{"window_seconds":60,"tiers":{"free":{"limit":true}}}`, want: []string{"tiers.free.limit: got boolean"}},
		{name: "limit is fractional", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10.5}}}`, want: []string{"tiers.free.limit: 10.5 is not an integer"}},
		{
			name: "limit over 1e9",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1000000001}}}`,
			want: []string{"tiers.free.limit: 1000000001 is more than the maximum 1000000000"},
		},
		{
			name: "limit overflows int32",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":4294967297}}}`,
			want: []string{"tiers.free.limit: 4294967297 is more than the maximum"},
		},
		{
			name: "limit overflows int64",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":-99999999999999999999}}}`,
			want: []string{"tiers.free.limit: -99999999999999999999 is not positive"},
		},
		{name: "burst zero", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":0}}}`, want: []string{"tiers.free.burst: 0 is not positive"}},
		{name: "burst negative", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":-20}}}`, want: []string{"tiers.free.burst: -20 is not positive"}},
		{name: "burst below limit", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":5}}}`, want: []string{"tiers.free.burst: 5 is less than limit 10"}},
		{
			name: "burst over 1e9",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":2000000000}}}`,
			want: []string{"tiers.free.burst: 2000000000 is more than the maximum 1000000000"},
		},
		{name: "burst is null", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":null}}}`, want: []string{"tiers.free.burst: got null"}},
		{name: "degraded zero", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"degraded":0}}}`, want: []string{"tiers.free.degraded: 0 is not positive"}},
		{name: "degraded negative", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"degraded":-2}}}`, want: []string{"tiers.free.degraded: -2 is not positive"}},
		{name: "degraded above limit", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"degraded":11}}}`, want: []string{"tiers.free.degraded: 11 is more than limit 10"}},
		{name: "degraded is an array", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"degraded":[2]}}}`, want: []string{"tiers.free.degraded: got array"}},

		// cost, concurrency, cost_unit.
		{
			name: "unknown tier field names the new ones",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"costs":{}}}}`,
			want: []string{"tiers.free.costs: unknown field (want limit, burst, degraded, cost or concurrency)"},
		},
		{
			name: "unknown cost field",
			doc:  `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":5,"estimate":1}}}}`,
			want: []string{"tiers.free.cost.estimate: unknown field (want limit, burst, degraded or default_estimate)"},
		},
		{
			name: "unknown concurrency field",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"concurrency":{"limit":5,"default_estimate":1}}}}`,
			want: []string{"tiers.free.concurrency.default_estimate: unknown field (want limit, burst or degraded)"},
		},
		{name: "cost is a number", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":300}}}`, want: []string{"tiers.free.cost: got number, want an object"}},
		{name: "cost limit missing", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"burst":5}}}}`, want: []string{"tiers.free.cost.limit: missing"}},
		{name: "cost limit zero", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":0}}}}`, want: []string{"tiers.free.cost.limit: 0 is not positive"}},
		{name: "cost burst below limit", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":300,"burst":200}}}}`, want: []string{"tiers.free.cost.burst: 200 is less than limit 300"}},
		{name: "cost degraded above limit", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":300,"degraded":301}}}}`, want: []string{"tiers.free.cost.degraded: 301 is more than limit 300"}},
		{name: "cost over 1e9", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":1000000001}}}}`, want: []string{"tiers.free.cost.limit: 1000000001 is more than the maximum 1000000000"}},
		{name: "estimate negative", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":300,"default_estimate":-1}}}}`, want: []string{"tiers.free.cost.default_estimate: -1 is negative"}},
		{name: "estimate a string", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":300,"default_estimate":"30"}}}}`, want: []string{"tiers.free.cost.default_estimate: got string, want an integer, 0 or more"}},
		{
			name: "estimate above burst",
			doc:  `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":300,"burst":400,"default_estimate":401}}}}`,
			want: []string{"tiers.free.cost.default_estimate: 401 is more than burst 400"},
		},
		{name: "concurrency limit zero", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"concurrency":{"limit":0}}}}`, want: []string{"tiers.free.concurrency.limit: 0 is not positive"}},
		{name: "concurrency burst below limit", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"concurrency":{"limit":2,"burst":1}}}}`, want: []string{"tiers.free.concurrency.burst: 1 is less than limit 2"}},
		{name: "concurrency is null", doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"concurrency":null}}}`, want: []string{"tiers.free.concurrency: got null, want an object"}},
		{name: "repeated cost", doc: `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"cost":{"limit":1},"cost":{"limit":2}}}}`, want: []string{"tiers.free.cost: given twice"}},
		{
			name: "cost without cost_unit",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10},"pro":{"limit":100,"cost":{"limit":6000}}}}`,
			want: []string{"cost_unit: missing; tiers.pro.cost needs it"},
		},
		{name: "cost_unit empty", doc: `{"window_seconds":60,"cost_unit":"","tiers":{"free":{"limit":1}}}`, want: []string{"cost_unit: empty"}},
		{name: "cost_unit a number", doc: `{"window_seconds":60,"cost_unit":60,"tiers":{"free":{"limit":1}}}`, want: []string{`cost_unit: got number, want a unit's name such as "audio-seconds"`}},
		{name: "cost_unit with a quote", doc: `{"window_seconds":60,"cost_unit":"a\"b","tiers":{"free":{"limit":1}}}`, want: []string{`cost_unit: "a\"b" holds '"'`}},
		{name: "cost_unit with a space", doc: `{"window_seconds":60,"cost_unit":"audio seconds","tiers":{"free":{"limit":1}}}`, want: []string{`cost_unit: "audio seconds" holds ' '`}},
		{name: "cost_unit starting with a digit", doc: `{"window_seconds":60,"cost_unit":"1s","tiers":{"free":{"limit":1}}}`, want: []string{`cost_unit: "1s" does not start with a letter`}},
		{
			name: "cost_unit too long",
			doc:  `{"window_seconds":60,"cost_unit":"` + strings.Repeat("u", 65) + `","tiers":{"free":{"limit":1}}}`,
			want: []string{"cost_unit: longer than 64 bytes"},
		},

		// api_keys.
		{
			name: "key of unknown tier",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"k":"gold"}}`,
			want: []string{`api_keys["k"]: unknown tier "gold"`},
		},
		{
			name: "key of empty tier name",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"k":""}}`,
			want: []string{`api_keys["k"]: unknown tier ""`},
		},
		{
			name: "api_keys before tiers, unknown tier",
			doc:  `{"api_keys":{"k":"gold"},"window_seconds":60,"tiers":{"free":{"limit":1}}}`,
			want: []string{`api_keys["k"]: unknown tier "gold"`},
		},
		{name: "empty key", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"":"free"}}`, want: []string{`api_keys[""]: empty API key`}},
		{
			name: "key longer than 256 bytes",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"` + longKey + `":"free"}}`,
			want: []string{`api_keys["kkkk`, "API key is 257 bytes, longer than 256"},
		},
		{
			name: "key with a space",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"my key":"free"}}`,
			want: []string{`api_keys["my key"]`, "printable ASCII"},
		},
		{
			name: "key with a control character",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"k\n":"free"}}`,
			want: []string{`api_keys["k\n"]`, "printable ASCII"},
		},
		{
			name: "key with non-ASCII",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"clé":"free"}}`,
			want: []string{`api_keys["clé"]`, "printable ASCII"},
		},
		{
			name: "key maps to a number",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"k":1}}`,
			want: []string{`api_keys["k"]: got number, want a tier name`},
		},
		{
			name: "key maps to null",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":{"k":null}}`,
			want: []string{`api_keys["k"]: got null, want a tier name`},
		},
		{name: "api_keys is an array", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":["k"]}`, want: []string{"api_keys: got array, want an object"}},
		{name: "api_keys is null", doc: `{"window_seconds":60,"tiers":{"free":{"limit":1}},"api_keys":null}`, want: []string{"api_keys: got null, want an object"}},
	}
}

func TestParseRejects(t *testing.T) {
	for _, tt := range rejectCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc))
			require.Error(t, err, "Parse(%s) = %+v, want an error", tt.doc, got)
			assert.Nil(t, got)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w, "Parse(%s) error", tt.doc)
			}
		})
	}
}

func TestParseFirstErrorInFileOrder(t *testing.T) {
	// Two bad tiers: the message must always be about the first one, not
	// whichever a map iteration happens to reach first.
	doc := []byte(`{"window_seconds":60,"tiers":{"b":{"limit":0},"a":{"limit":-1}}}`)
	for range 20 {
		_, err := Parse(doc)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "tiers.b.limit")
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(shipped)
	require.NoError(f, err)
	f.Add(data)
	f.Add([]byte(`{"window_seconds":1,"tiers":{"t":{"limit":1}},"api_keys":{"k":"t"}}`))
	for _, c := range rejectCases() {
		f.Add([]byte(c.doc))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		tiers, err := Parse(data)
		if err != nil {
			assert.Nil(t, tiers, "Parse(%q) returned a value with error %v", data, err)
			return
		}
		checkInvariants(t, tiers)

		// The canonical content survives a round trip, and so does the hash.
		again, err := Parse(encode(t, tiers))
		require.NoError(t, err, "Parse(encode(Parse(%q)))", data)
		assert.Equal(t, tiers.Hash(), again.Hash(), "hash after a round trip of %q", data)
		assert.Equal(t, tiers.Names(), again.Names())
		assert.Equal(t, tiers.KeyCount(), again.KeyCount())
	})
}

// checkInvariants fails t unless tiers satisfies everything Parse promises.
func checkInvariants(t *testing.T, tiers *Tiers) {
	t.Helper()
	assert.Positive(t, tiers.Window)
	assert.LessOrEqual(t, tiers.Window, 24*time.Hour)
	assert.Zero(t, tiers.Window%time.Second, "Window = %v, want whole seconds", tiers.Window)
	assert.Len(t, tiers.Hash(), 16)

	names := tiers.Names()
	require.NotEmpty(t, names)
	assert.IsIncreasing(t, names)
	for _, name := range names {
		tier, ok := tiers.Tier(name)
		require.True(t, ok, "Tier(%q) missing but in Names()", name)
		assert.Equal(t, name, tier.Name)
		assert.NotEmpty(t, name)
		assert.Positive(t, tier.Limit, "tier %+v", tier)
		assert.GreaterOrEqual(t, tier.Burst, tier.Limit, "tier %+v", tier)
		assert.Positive(t, tier.Degraded, "tier %+v", tier)
		assert.LessOrEqual(t, tier.Degraded, tier.Limit, "tier %+v", tier)
		assert.LessOrEqual(t, tier.Burst, maxLimit, "tier %+v", tier)
	}

	assert.Equal(t, len(tiers.keys), tiers.KeyCount())
	for key := range tiers.keys {
		assert.NoError(t, CheckKey(key), "key %q", key)
		got, ok := tiers.Lookup(key)
		require.True(t, ok, "Lookup(%q)", key)
		want, ok := tiers.Tier(got.Name)
		require.True(t, ok, "key %q maps to tier %q, which does not exist", key, got.Name)
		assert.Equal(t, want, got, "Lookup(%q)", key)
	}
}

// encode writes tiers back as a tiers.json document with every field given.
func encode(t *testing.T, tiers *Tiers) []byte {
	t.Helper()
	type tierJSON struct {
		Limit    int `json:"limit"`
		Burst    int `json:"burst"`
		Degraded int `json:"degraded"`
	}
	doc := struct {
		WindowSeconds int64               `json:"window_seconds"`
		Tiers         map[string]tierJSON `json:"tiers"`
		APIKeys       map[string]string   `json:"api_keys"`
	}{
		WindowSeconds: int64(tiers.Window / time.Second),
		Tiers:         make(map[string]tierJSON),
		APIKeys:       make(map[string]string),
	}
	for _, name := range tiers.Names() {
		tier, _ := tiers.Tier(name)
		doc.Tiers[name] = tierJSON{Limit: tier.Limit, Burst: tier.Burst, Degraded: tier.Degraded}
	}
	for key, tier := range tiers.keys {
		doc.APIKeys[key] = tier.Name
	}
	data, err := json.Marshal(doc)
	require.NoError(t, err)
	return data
}
