// Package bucket counts hits per key in sliding windows and decides whether
// a hit fits under a limit.
package bucket

import "time"

// Config configures a Store. Zero values mean the defaults.
type Config struct {
	// Window is the length of one counting window. Required, > 0.
	Window time.Duration
	// Shards is the number of independently locked shards; default 64.
	Shards int
	// MaxKeys caps the number of live keys; default 1,000,000.
	MaxKeys int
}

// Decision is the outcome of one Take.
type Decision struct {
	Allowed   bool
	Limit     int
	Remaining int
	ResetAt   time.Time
	RetryAt   time.Time
}

// Store is a sharded in-memory map from key to sliding-window counts.
type Store struct{ window time.Duration }

// New returns an empty Store.
func New(cfg Config) *Store { return &Store{window: cfg.Window} }

// Take counts hits for key at now if they fit under limit.
func (s *Store) Take(now time.Time, key string, hits, limit int) Decision { return Decision{} }

// Window returns the store's window length.
func (s *Store) Window() time.Duration { return s.window }
