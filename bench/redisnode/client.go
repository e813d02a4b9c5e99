package main

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// newClient returns a go-redis client for the Redis at addr, set up so the
// baseline is neither helped nor hindered by its client:
//
//   - PoolSize is poolSize: at most that many checks are in flight at once,
//     one command per connection and no pipelining across requests, so
//     every check is its own round trip. Connections are dialled on first
//     use (MinIdleConns 0); bench/run.sh warms them up before it measures.
//   - timeout bounds every step of a check: waiting for a free connection
//     (PoolTimeout), dialling (DialTimeout, one attempt), writing and
//     reading (WriteTimeout, ReadTimeout). With ContextTimeoutEnabled the
//     caller's context deadline, which checker sets to the same timeout,
//     bounds the whole check, waiting for a connection included.
//   - No retries (MaxRetries -1): a failed check fails open at once.
//   - RESP2 without a client-identity handshake: a connection costs one
//     TCP connect, and the script's reply (four integers) reads the same in
//     either protocol.
//
// It is safe for concurrent use; Close it to free the connections.
func newClient(addr string, poolSize int, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		Protocol:              2,
		DisableIdentity:       true,
		PoolSize:              poolSize,
		PoolTimeout:           timeout,
		DialTimeout:           timeout,
		DialerRetries:         1,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
}
