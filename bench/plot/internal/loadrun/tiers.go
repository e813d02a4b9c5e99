package loadrun

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/tierlimit/tierlimit/config"
)

// TiersFile is a tiers file read for a load: its tiers and its API keys.
type TiersFile struct {
	Path  string
	Tiers *config.Tiers
	// byTier holds the file's API keys per tier, sorted.
	byTier map[string][]string
}

// ReadTiers reads and validates the tiers file at path.
func ReadTiers(path string) (*TiersFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tiers: %w", err)
	}
	tiers, err := config.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load tiers %s: %w", path, err)
	}
	// config.Tiers hides its keys; read them again, already validated.
	var raw struct {
		APIKeys map[string]string `json:"api_keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("load tiers %s: %w", path, err)
	}
	byTier := make(map[string][]string)
	for k, t := range raw.APIKeys {
		byTier[t] = append(byTier[t], k)
	}
	for _, keys := range byTier {
		slices.Sort(keys)
	}
	return &TiersFile{Path: path, Tiers: tiers, byTier: byTier}, nil
}

// Keys returns the first n of tier's API keys in sorted order (-keys
// tier=n); n must be a whole number and the file must have that many
// (else the error says, in brackets, more if not empty: how to write more).
func (f *TiersFile) Keys(tier string, n float64, more string) ([]string, error) {
	if n != float64(int(n)) {
		return nil, fmt.Errorf("-keys %s=%v: want a whole number", tier, n)
	}
	have := f.byTier[tier]
	if int(n) > len(have) {
		err := fmt.Errorf("tier %s: -keys asks for %d keys, %s has %d", tier, int(n), f.Path, len(have))
		if more != "" {
			err = fmt.Errorf("%w (%s)", err, more)
		}
		return nil, err
	}
	return have[:int(n)], nil
}
