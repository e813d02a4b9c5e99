package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// MaxKeyLen is the longest API key accepted anywhere, in bytes: in
// tiers.json, in X-API-Key, and on the wire between peers.
const MaxKeyLen = 256

// CheckKey reports what is wrong with an API key, or returns nil. A key is
// something a client can send in an X-API-Key header: 1 to MaxKeyLen bytes
// of printable ASCII without spaces. The tiers file, the middleware and the
// peer server all apply this one rule, so any key in the file can be sent
// and nothing else reaches a count. The error never holds the key.
func CheckKey(key string) error {
	if key == "" {
		return errors.New("empty API key")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("API key is %d bytes, longer than %d", len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("API key has byte %#x at %d; want printable ASCII without spaces", c, i)
		}
	}
	return nil
}

// A counter key names one of an API key's counts: the key itself for its
// requests, and the key with a suffix for each other dimension its tier
// limits. A suffix starts with a space, which no API key holds, so counter
// keys never collide with API keys; and the ring places a counter key by
// the API key before the space (RouteKey), so that all of a key's counts
// live at the key's owner and move together.
const costSuffix = " cost"

// CostKey returns the counter key of key's cost.
func CostKey(key string) string { return key + costSuffix }

// RouteKey returns the API key a counter key belongs to: the part before
// its first space, or all of it. It does not allocate.
func RouteKey(counter string) string {
	for i := 0; i < len(counter); i++ {
		if counter[i] == ' ' {
			return counter[:i]
		}
	}
	return counter
}

// CheckCounterKey reports what is wrong with a counter key, or returns
// nil: an API key CheckKey accepts, alone or with a known suffix. Peers
// apply it to every key that crosses the wire. The error never holds the
// key.
func CheckCounterKey(counter string) error {
	base := RouteKey(counter)
	if len(base) < len(counter) && counter[len(base):] != costSuffix {
		return errors.New("counter key has an unknown suffix")
	}
	return CheckKey(base)
}

// KeyHash returns a short, stable fingerprint of an API key: 8 hex digits
// of its SHA-256. Logs carry it (as key_hash) instead of the key, which
// must never be logged; every package uses this one, so a key has the same
// fingerprint in every log line.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}
