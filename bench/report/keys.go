package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// tiersFile is the part of tiers.json this tool reads and writes. Tiers is
// kept as written.
type tiersFile struct {
	WindowSeconds int                        `json:"window_seconds"`
	Tiers         map[string]json.RawMessage `json:"tiers"`
	APIKeys       map[string]string          `json:"api_keys"`
}

// takeKeys writes to out a copy of the tiers file at configPath that holds,
// for each tier=n in spec, the next n keys of that tier loadgen -gen-config
// wrote, and records them as used in statePath.
func takeKeys(configPath, statePath, spec, out string) error {
	tf, err := readTiers(configPath)
	if err != nil {
		return err
	}
	want, err := parseTake(spec)
	if err != nil {
		return err
	}
	used := map[string]int{}
	if data, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(data, &used); err != nil {
			return fmt.Errorf("read %s: %w", statePath, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	slice, err := nextKeys(tf, used, want)
	if err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	outFile := tiersFile{WindowSeconds: tf.WindowSeconds, Tiers: tf.Tiers, APIKeys: slice}
	if err := writeJSON(out, outFile); err != nil {
		return err
	}
	return writeJSON(statePath, used)
}

// takeSpec is one tier=n of -take.
type takeSpec struct {
	tier string
	n    int
}

// parseTake parses "enterprise=1000,free=5".
func parseTake(spec string) ([]takeSpec, error) {
	var out []takeSpec
	for part := range strings.SplitSeq(spec, ",") {
		tier, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, err := strconv.Atoi(n)
		if !ok || tier == "" || err != nil || k < 1 {
			return nil, fmt.Errorf("-take %q: want tier=count,… with counts ≥ 1", spec)
		}
		out = append(out, takeSpec{tier: tier, n: k})
	}
	return out, nil
}

// nextKeys returns the next unused generated keys of each tier in want,
// advancing used. Generated keys are lg-<tier>-<runid>-<i>; they are taken
// in order of i.
func nextKeys(tf tiersFile, used map[string]int, want []takeSpec) (map[string]string, error) {
	out := map[string]string{}
	for _, w := range want {
		keys := generatedKeys(tf, w.tier)
		from := used[w.tier]
		if from+w.n > len(keys) {
			return nil, fmt.Errorf("tier %s: %d generated keys, %d used, %d more wanted: generate more (-gen-keys)",
				w.tier, len(keys), from, w.n)
		}
		for _, k := range keys[from : from+w.n] {
			out[k] = w.tier
		}
		used[w.tier] = from + w.n
	}
	return out, nil
}

// generatedKeys returns the keys of tier that loadgen -gen-config wrote, in
// the order of their number.
func generatedKeys(tf tiersFile, tier string) []string {
	prefix := "lg-" + tier + "-"
	type numbered struct {
		key string
		i   int
	}
	var ks []numbered
	for k, t := range tf.APIKeys {
		if t != tier || !strings.HasPrefix(k, prefix) {
			continue
		}
		i, err := strconv.Atoi(k[strings.LastIndexByte(k, '-')+1:])
		if err != nil {
			continue
		}
		ks = append(ks, numbered{k, i})
	}
	slices.SortFunc(ks, func(a, b numbered) int {
		if a.i != b.i {
			return a.i - b.i
		}
		return strings.Compare(a.key, b.key)
	})
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.key
	}
	return out
}

func readTiers(path string) (tiersFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tiersFile{}, err
	}
	var tf tiersFile
	if err := json.Unmarshal(data, &tf); err != nil {
		return tiersFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	return tf, nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
