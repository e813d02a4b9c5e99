package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shipped is the file this package ships, relative to the package directory
// that go test runs in.
const shipped = "tiers.json"

// TestLoadShippedGPU: the shipped example of cost and concurrency limits
// (the README's) loads as it reads.
func TestLoadShippedGPU(t *testing.T) {
	tiers, err := Load("tiers-gpu.json")
	require.NoError(t, err)
	assert.Equal(t, "audio-seconds", tiers.CostUnit)
	free, ok := tiers.Tier("free")
	require.True(t, ok)
	assert.Equal(t, Tier{Name: "free", Limit: 10, Burst: 20, Degraded: 2,
		Cost: Limits{300, 600, 60}, CostEstimate: 30, Concurrency: Limits{1, 2, 1}}, free)
	ent, ok := tiers.Tier("enterprise")
	require.True(t, ok)
	assert.Equal(t, Limits{100, 150, 100}, ent.Concurrency)
	assert.Equal(t, 3, tiers.KeyCount())
}

func TestLoadShipped(t *testing.T) {
	tiers, err := Load(shipped)
	require.NoError(t, err, "Load(%q)", shipped)

	assert.Equal(t, 60*time.Second, tiers.Window)
	assert.Equal(t, []string{"enterprise", "free", "pro"}, tiers.Names())
	assert.Equal(t, 9, tiers.KeyCount())
	assert.Len(t, tiers.Hash(), 16)

	wantTiers := []Tier{
		{Name: "free", Limit: 10, Burst: 20, Degraded: 2},
		{Name: "pro", Limit: 100, Burst: 150, Degraded: 100},
		{Name: "enterprise", Limit: 1000, Burst: 1500, Degraded: 1000},
	}
	for _, want := range wantTiers {
		got, ok := tiers.Tier(want.Name)
		require.True(t, ok, "Tier(%q) not found", want.Name)
		assert.Equal(t, want, got, "Tier(%q)", want.Name)
	}

	wantKeys := map[string]string{
		"free-demo-1": "free", "free-demo-2": "free", "free-demo-3": "free",
		"pro-demo-1": "pro", "pro-demo-2": "pro", "pro-demo-3": "pro",
		"ent-demo-1": "enterprise", "ent-demo-2": "enterprise", "ent-demo-3": "enterprise",
	}
	for key, want := range wantKeys {
		got, ok := tiers.Lookup(key)
		require.True(t, ok, "Lookup(%q) not found", key)
		assert.Equal(t, want, got.Name, "Lookup(%q).Name", key)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	huge := write("huge.json", []byte(`{"window_seconds":60,"tiers":{"a":{"limit":1}}}`+strings.Repeat(" ", maxFileSize)))
	bad := write("bad.json", []byte(`{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":5}}}`))
	missing := filepath.Join(dir, "missing.json")

	tests := []struct {
		name string
		path string
		want []string
	}{
		{name: "missing file", path: missing, want: []string{missing, "no such file"}},
		{name: "larger than 16 MiB", path: huge, want: []string{huge, "larger than 16777216 bytes"}},
		{name: "invalid content", path: bad, want: []string{bad, "tiers.free.burst: 5 is less than limit 10"}},
		{name: "directory", path: dir, want: []string{dir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.path)
			require.Error(t, err, "Load(%q) = %v, want an error", tt.path, got)
			assert.Nil(t, got)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w, "Load(%q) error", tt.path)
			}
		})
	}

	_, err := Load(missing)
	assert.ErrorIs(t, err, fs.ErrNotExist, "Load(%q) must wrap the open error", missing)
}

func TestTierLimitFor(t *testing.T) {
	free := Tier{Name: "free", Limit: 10, Burst: 20, Degraded: 2}
	tests := []struct {
		name     string
		degraded bool
		want     int
	}{
		{name: "normal uses burst", degraded: false, want: 20},
		{name: "degraded uses degraded", degraded: true, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, free.LimitFor(tt.degraded), "%+v.LimitFor(%v)", free, tt.degraded)
		})
	}
}

func TestLookup(t *testing.T) {
	tiers, err := Load(shipped)
	require.NoError(t, err)

	tests := []struct {
		name     string
		key      string
		wantOK   bool
		wantTier string
	}{
		{name: "free key", key: "free-demo-1", wantOK: true, wantTier: "free"},
		{name: "pro key", key: "pro-demo-3", wantOK: true, wantTier: "pro"},
		{name: "enterprise key", key: "ent-demo-2", wantOK: true, wantTier: "enterprise"},
		{name: "unknown key", key: "gold-demo-1"},
		{name: "empty key", key: ""},
		{name: "case matters", key: "FREE-DEMO-1"},
		{name: "tier name is not a key", key: "free"},
		{name: "prefix of a key", key: "free-demo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tiers.Lookup(tt.key)
			require.Equal(t, tt.wantOK, ok, "Lookup(%q) = %+v, %v", tt.key, got, ok)
			if !ok {
				assert.Zero(t, got, "Lookup(%q) tier on a miss", tt.key)
				return
			}
			want, _ := tiers.Tier(tt.wantTier)
			assert.Equal(t, want, got, "Lookup(%q)", tt.key)
		})
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tiers, err := Load(shipped)
	require.NoError(t, err)
	for _, key := range []string{"pro-demo-1", "no-such-key"} {
		allocs := testing.AllocsPerRun(100, func() { tiers.Lookup(key) })
		assert.Zero(t, allocs, "Lookup(%q) allocations per call", key)
	}
}

func TestTier(t *testing.T) {
	tiers, err := Load(shipped)
	require.NoError(t, err)
	tests := []struct {
		name   string
		tier   string
		wantOK bool
	}{
		{name: "known", tier: "pro", wantOK: true},
		{name: "unknown", tier: "gold"},
		{name: "empty", tier: ""},
		{name: "key is not a tier", tier: "pro-demo-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tiers.Tier(tt.tier)
			assert.Equal(t, tt.wantOK, ok, "Tier(%q) = %+v, %v", tt.tier, got, ok)
			if ok {
				assert.Equal(t, tt.tier, got.Name)
			}
		})
	}
}

func TestNamesReturnsACopy(t *testing.T) {
	tiers, err := Load(shipped)
	require.NoError(t, err)
	names := tiers.Names()
	names[0] = "changed"
	assert.Equal(t, []string{"enterprise", "free", "pro"}, tiers.Names())
}

func TestZeroTiers(t *testing.T) {
	var z Tiers
	got, ok := z.Lookup("free-demo-1")
	assert.False(t, ok, "zero Tiers: Lookup = %+v, true", got)
	_, ok = z.Tier("free")
	assert.False(t, ok)
	assert.Empty(t, z.Names())
	assert.Zero(t, z.KeyCount())
	assert.Empty(t, z.Hash())
}

func TestHash(t *testing.T) {
	const base = `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100}},` +
		`"api_keys":{"a":"free","b":"pro"}}`
	baseTiers, err := Parse([]byte(base))
	require.NoError(t, err)
	baseHash := baseTiers.Hash()
	require.Len(t, baseHash, 16)
	_, err = strconv.ParseUint(baseHash, 16, 64)
	require.NoError(t, err, "Hash() = %q, want 16 hex digits", baseHash)
	// The canonical form of a file without cost or concurrency is v1's, so
	// nodes that know those and nodes that do not agree on its hash:
	// sha256("tierlimit tiers v1\nwindow_ns 60000000000\ntier \"free\" 10 20 2\n…").
	assert.Equal(t, "e1f5c20045e3d57c", baseHash, "a file without cost or concurrency no longer hashes as before")

	tests := []struct {
		name string
		doc  string
		same bool
	}{
		{name: "identical", doc: base, same: true},
		{
			name: "whitespace",
			doc: "{\n\t\"window_seconds\" : 60 ,\n \"tiers\": {\n  \"free\": { \"limit\": 10, \"burst\": 20, \"degraded\": 2 },\n" +
				"  \"pro\": {\"limit\": 100}\n },\n \"api_keys\": { \"a\": \"free\", \"b\": \"pro\" }\n}\n",
			same: true,
		},
		{
			name: "member order",
			doc: `{"api_keys":{"b":"pro","a":"free"},"tiers":{"pro":{"limit":100},"free":{"degraded":2,"burst":20,"limit":10}},` +
				`"window_seconds":60}`,
			same: true,
		},
		{
			name: "defaults written out",
			doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100,"burst":100,"degraded":100}},` +
				`"api_keys":{"a":"free","b":"pro"}}`,
			same: true,
		},
		{
			name: "escaped key",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100}},"api_keys":{"\u0061":"free","b":"pro"}}`,
			same: true,
		},
		{
			name: "cost_unit added",
			doc:  `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100}},"api_keys":{"a":"free","b":"pro"}}`,
		},
		{
			name: "cost added",
			doc:  `{"window_seconds":60,"cost_unit":"s","tiers":{"free":{"limit":10,"burst":20,"degraded":2,"cost":{"limit":5}},"pro":{"limit":100}},"api_keys":{"a":"free","b":"pro"}}`,
		},
		{
			name: "concurrency added",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2,"concurrency":{"limit":1}},"pro":{"limit":100}},"api_keys":{"a":"free","b":"pro"}}`,
		},
		{
			name: "window changed",
			doc:  `{"window_seconds":61,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100}},"api_keys":{"a":"free","b":"pro"}}`,
		},
		{
			name: "limit changed",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":11,"burst":20,"degraded":2},"pro":{"limit":100}},"api_keys":{"a":"free","b":"pro"}}`,
		},
		{
			name: "burst changed",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":21,"degraded":2},"pro":{"limit":100}},"api_keys":{"a":"free","b":"pro"}}`,
		},
		{
			name: "degraded changed",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":3},"pro":{"limit":100}},"api_keys":{"a":"free","b":"pro"}}`,
		},
		{
			name: "key moved to another tier",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100}},"api_keys":{"a":"pro","b":"pro"}}`,
		},
		{
			name: "key added",
			doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100}},` +
				`"api_keys":{"a":"free","b":"pro","c":"pro"}}`,
		},
		{
			name: "key removed",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100}},"api_keys":{"a":"free"}}`,
		},
		{
			name: "tier renamed",
			doc:  `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"plus":{"limit":100}},"api_keys":{"a":"free","b":"plus"}}`,
		},
		{
			name: "unused tier added",
			doc: `{"window_seconds":60,"tiers":{"free":{"limit":10,"burst":20,"degraded":2},"pro":{"limit":100},"x":{"limit":1}},` +
				`"api_keys":{"a":"free","b":"pro"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tiers, err := Parse([]byte(tt.doc))
			require.NoError(t, err, "Parse(%s)", tt.doc)
			if tt.same {
				assert.Equal(t, baseHash, tiers.Hash(), "Hash() of %s", tt.doc)
			} else {
				assert.NotEqual(t, baseHash, tiers.Hash(), "Hash() of %s", tt.doc)
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	for _, size := range []int{10, 10_000, 100_000} {
		var sb strings.Builder
		sb.WriteString(`{"window_seconds":60,"tiers":{"free":{"limit":10}},"api_keys":{`)
		for i := range size {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`"key-` + strconv.Itoa(i) + `":"free"`)
		}
		sb.WriteString(`}}`)
		tiers, err := Parse([]byte(sb.String()))
		require.NoError(b, err)
		hit := "key-" + strconv.Itoa(size/2)

		b.Run("keys="+strconv.Itoa(size)+"/hit", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tiers.Lookup(hit)
			}
		})
		b.Run("keys="+strconv.Itoa(size)+"/miss", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tiers.Lookup("no-such-key")
			}
		})
	}
}
