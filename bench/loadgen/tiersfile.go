package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// maxTiersFileSize is the largest tiers file loadgen reads or writes: the
// size the node's loader accepts, so a generated file always loads.
const maxTiersFileSize = 16 << 20

// tiersFile is a tiers.json document, with the schema the node reads
// (package config): window_seconds, cost_unit,
// tiers.{name}.{limit,burst,degraded,cost,concurrency}, and api_keys (key →
// tier). Loadgen keeps its own small copy of the schema, rather than
// importing package config, because it must list the keys of a tier and
// write the file back, which config does not offer. Burst and Degraded are
// kept as written (0 when omitted) so a copy says what the original said;
// Tier fills the defaults. A tier's cost and concurrency limits are only
// carried over (loadgen judges requests only), so that a file with them
// loads and -gen-config keeps them.
type tiersFile struct {
	WindowSeconds int                 `json:"window_seconds"`
	CostUnit      string              `json:"cost_unit,omitempty"`
	Tiers         map[string]tierSpec `json:"tiers"`
	APIKeys       map[string]string   `json:"api_keys,omitempty"`
}

// tierSpec is one tier as written in the file.
type tierSpec struct {
	Limit       int         `json:"limit"`
	Burst       int         `json:"burst,omitempty"`
	Degraded    int         `json:"degraded,omitempty"`
	Cost        *costSpec   `json:"cost,omitempty"`
	Concurrency *limitsSpec `json:"concurrency,omitempty"`
}

// limitsSpec is a tier's concurrency limits as written in the file.
type limitsSpec struct {
	Limit    int `json:"limit"`
	Burst    int `json:"burst,omitempty"`
	Degraded int `json:"degraded,omitempty"`
}

// costSpec is a tier's cost limits as written in the file.
type costSpec struct {
	Limit           int `json:"limit"`
	Burst           int `json:"burst,omitempty"`
	Degraded        int `json:"degraded,omitempty"`
	DefaultEstimate int `json:"default_estimate,omitempty"`
}

// loadTiersFile reads and parses the tiers file at path.
func loadTiersFile(path string) (tiersFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return tiersFile{}, fmt.Errorf("read tiers: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTiersFileSize+1))
	if err != nil {
		return tiersFile{}, fmt.Errorf("read tiers %s: %w", path, err)
	}
	if len(data) > maxTiersFileSize {
		return tiersFile{}, fmt.Errorf("read tiers %s: larger than %d bytes", path, maxTiersFileSize)
	}
	tf, err := parseTiersFile(data)
	if err != nil {
		return tiersFile{}, fmt.Errorf("read tiers %s: %w", path, err)
	}
	return tf, nil
}

// parseTiersFile parses a tiers.json document. It checks what loadgen
// relies on (a positive window, at least one tier, positive limits, keys
// whose tier exists) and refuses unknown fields as the node does; the node
// remains the judge of the finer rules.
func parseTiersFile(data []byte) (tiersFile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var tf tiersFile
	if err := dec.Decode(&tf); err != nil {
		return tiersFile{}, fmt.Errorf("parse: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return tiersFile{}, errors.New("parse: unexpected data after the top-level object")
	}
	if tf.WindowSeconds <= 0 {
		return tiersFile{}, fmt.Errorf("window_seconds: %d, want > 0", tf.WindowSeconds)
	}
	if len(tf.Tiers) == 0 {
		return tiersFile{}, errors.New("tiers: missing or empty")
	}
	for _, name := range tf.tierNames() {
		if tf.Tiers[name].Limit <= 0 {
			return tiersFile{}, fmt.Errorf("tiers.%s.limit: %d, want > 0", name, tf.Tiers[name].Limit)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(tf.APIKeys)) {
		if _, ok := tf.Tiers[tf.APIKeys[key]]; !ok {
			return tiersFile{}, fmt.Errorf("api_keys[%q]: unknown tier %q", key, tf.APIKeys[key])
		}
	}
	return tf, nil
}

// window returns the counting window.
func (tf tiersFile) window() time.Duration {
	return time.Duration(tf.WindowSeconds) * time.Second
}

// tierNames returns the tier names, sorted.
func (tf tiersFile) tierNames() []string {
	return slices.Sorted(maps.Keys(tf.Tiers))
}

// tier returns the limits of the tier called name with the node's defaults
// filled (burst and degraded default to limit), and reports whether the
// tier exists.
func (tf tiersFile) tier(name string) (tierSpec, bool) {
	t, ok := tf.Tiers[name]
	if !ok {
		return tierSpec{}, false
	}
	if t.Burst == 0 {
		t.Burst = t.Limit
	}
	if t.Degraded == 0 {
		t.Degraded = t.Limit
	}
	return t, true
}

// generatedPrefix starts every key that -gen-config writes.
const generatedPrefix = "lg-"

// keysOf returns the keys of tier in the order loadgen uses them: keys
// written by -gen-config first, as they are the ones known to be fresh,
// then the others; each group in natural order (key-2 before key-10).
func (tf tiersFile) keysOf(tier string) []string {
	var keys []string
	for k, t := range tf.APIKeys {
		if t == tier {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		ga, gb := strings.HasPrefix(a, generatedPrefix), strings.HasPrefix(b, generatedPrefix)
		switch {
		case ga && !gb:
			return -1
		case gb && !ga:
			return 1
		}
		return naturalCompare(a, b)
	})
	return keys
}

// naturalCompare compares a and b as strings in which runs of ASCII digits
// compare as numbers, so "k-2" sorts before "k-10". Equal numbers with a
// different count of leading zeros fall back to plain order.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if !da || !db {
			if a[0] != b[0] {
				return int(a[0]) - int(b[0])
			}
			a, b = a[1:], b[1:]
			continue
		}
		na, ra := splitDigits(a)
		nb, rb := splitDigits(b)
		ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
		if len(ta) != len(tb) {
			return len(ta) - len(tb)
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
		if c := strings.Compare(na, nb); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// splitDigits splits s after its leading run of digits.
func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}
