package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
)

// maxGenKeys bounds -gen-keys, keys per tier, so a generated file stays
// well under the 16 MiB the node reads.
const maxGenKeys = 100_000

// maxKeyLen is the longest API key the node accepts, in bytes.
const maxKeyLen = 256

// generatedKey returns the name of the i-th (from 1) key that -gen-config
// writes for tier in run runID: lg-<tier>-<runID>-<i>.
func generatedKey(tier, runID string, i int) string {
	return generatedPrefix + tier + "-" + runID + "-" + strconv.Itoa(i)
}

// genConfig returns src as an indented JSON document with n more keys per
// tier, named by generatedKey with i from 1 to n. The window, the cost
// unit, the tiers (with their cost and concurrency limits) and the keys
// already in src are kept, so nodes started with the result serve
// the old keys as before and the new ones, fresh, for accuracy runs. It
// fails if a new name is not a key the node accepts (a tier name with
// spaces, say), collides with a key in src, or if the file would be larger
// than the node reads.
func genConfig(src tiersFile, n int, runID string) ([]byte, error) {
	if n < 1 || n > maxGenKeys {
		return nil, fmt.Errorf("-gen-keys %d: want 1 to %d", n, maxGenKeys)
	}
	out := tiersFile{
		WindowSeconds: src.WindowSeconds,
		CostUnit:      src.CostUnit,
		Tiers:         src.Tiers,
		APIKeys:       make(map[string]string, len(src.APIKeys)+n*len(src.Tiers)),
	}
	maps.Copy(out.APIKeys, src.APIKeys)
	for _, tier := range src.tierNames() {
		for i := 1; i <= n; i++ {
			key := generatedKey(tier, runID, i)
			if !validKey(key) {
				return nil, fmt.Errorf("tier %q: generated key %q is not a valid API key (printable ASCII without spaces, at most %d bytes)", tier, key, maxKeyLen)
			}
			if _, dup := out.APIKeys[key]; dup {
				return nil, fmt.Errorf("generated key %q is already in the config", key)
			}
			out.APIKeys[key] = tier
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode tiers: %w", err)
	}
	data = append(data, '\n')
	if len(data) > maxTiersFileSize {
		return nil, fmt.Errorf("generated file is %d bytes, more than the %d the node reads: lower -gen-keys", len(data), maxTiersFileSize)
	}
	return data, nil
}

// validKey reports whether k is an API key the node accepts: 1 to 256 bytes
// of printable ASCII without spaces.
func validKey(k string) bool {
	if len(k) == 0 || len(k) > maxKeyLen {
		return false
	}
	for i := range len(k) {
		if k[i] <= ' ' || k[i] > '~' {
			return false
		}
	}
	return true
}

// newRunID returns 8 random hex digits that tell one generated set of keys
// from another.
func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
