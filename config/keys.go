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

// KeyHash returns a short, stable fingerprint of an API key: 8 hex digits
// of its SHA-256. Logs carry it (as key_hash) instead of the key, which
// must never be logged; every package uses this one, so a key has the same
// fingerprint in every log line.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}
