package peer

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// client returns the Client the Book holds for name.
func (b *Book) client(t *testing.T, name string) *Client {
	t.Helper()
	p, ok := b.Peer(name)
	require.True(t, ok, "Peer(%q) not found", name)
	return p.(*Client)
}

func TestBookSet(t *testing.T) {
	b := NewBook(insecure.NewCredentials())
	t.Cleanup(func() { _ = b.Close() })

	stale, release := b.Set(map[string]string{"a": "127.0.0.1:1001", "b": "127.0.0.1:1001"})
	assert.Empty(t, stale)
	release()
	a1, b1 := b.client(t, "a"), b.client(t, "b")
	assert.NotSame(t, a1, b1, "two peers at one address share a client")
	_, ok := b.Peer("c")
	assert.False(t, ok, "Peer(c) of a book without c")

	// Same addresses: nothing changes.
	stale, release = b.Set(map[string]string{"a": "127.0.0.1:1001", "b": "127.0.0.1:1001"})
	assert.Empty(t, stale)
	release()
	assert.Same(t, a1, b.client(t, "a"))

	// a moves, b goes, c comes.
	stale, release = b.Set(map[string]string{"a": "127.0.0.1:1002", "c": "127.0.0.1:1003"})
	assert.ElementsMatch(t, []string{"a", "b"}, stale)
	a2 := b.client(t, "a")
	assert.NotSame(t, a1, a2, "a moved but kept its old client")
	assert.Equal(t, "127.0.0.1:1002", a2.addr)
	_, ok = b.Peer("b")
	assert.False(t, ok, "b is gone but still in the book")
	assert.NotEqual(t, connectivity.Shutdown, a1.conn.GetState(), "an old client was closed before release")
	release()
	assert.Equal(t, connectivity.Shutdown, a1.conn.GetState(), "release left a's old client open")
	assert.Equal(t, connectivity.Shutdown, b1.conn.GetState(), "release left b's client open")

	// An address that cannot be dialled is left out.
	stale, release = b.Set(map[string]string{"a": "127.0.0.1:1002", "c": "127.0.0.1:1003", "d": ""})
	release()
	assert.Empty(t, stale)
	_, ok = b.Peer("d")
	assert.False(t, ok, "a peer with an empty address")

	c := b.client(t, "c")
	require.NoError(t, b.Close())
	assert.Equal(t, connectivity.Shutdown, a2.conn.GetState(), "Close left a client open")
	assert.Equal(t, connectivity.Shutdown, c.conn.GetState(), "Close left a client open")
	stale, release = b.Set(map[string]string{"e": "127.0.0.1:1005"})
	release()
	assert.Empty(t, stale)
	_, ok = b.Peer("e")
	assert.False(t, ok, "Set after Close added a peer")
}

func TestBookConcurrentUse(t *testing.T) {
	b := NewBook(insecure.NewCredentials())
	t.Cleanup(func() { _ = b.Close() })
	sets := []map[string]string{
		{"a": "127.0.0.1:1001", "b": "127.0.0.1:1002"},
		{"a": "127.0.0.1:1003", "c": "127.0.0.1:1002"},
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				if i%2 == 0 {
					_, release := b.Set(sets[(i/2+j)%2])
					release()
				} else {
					_, _ = b.Peer([]string{"a", "b", "c"}[j%3])
				}
			}
		})
	}
	wg.Wait()
	_, release := b.Set(sets[0])
	release()
	assert.Equal(t, "127.0.0.1:1001", b.client(t, "a").addr)
	assert.Equal(t, "127.0.0.1:1002", b.client(t, "b").addr)
}
