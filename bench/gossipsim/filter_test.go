package main

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withCRC prefixes b with memberlist's CRC header.
func withCRC(b []byte) []byte {
	h := []byte{hasCrcMsg, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[1:], crc32.ChecksumIEEE(b))
	return append(h, b...)
}

func mustCompress(t *testing.T, b []byte) []byte {
	t.Helper()
	c, err := compress(b)
	require.NoError(t, err)
	return c
}

func TestStripUserMessages(t *testing.T) {
	ping := []byte{0, 1, 2, 3}        // pingMsg and a body
	alive := []byte{4, 9, 9}          // aliveMsg and a body
	user := []byte{userMsg, '{', '}'} // a health message
	user2 := []byte{userMsg, 'x', 'y', 'z'}
	tests := []struct {
		name string
		in   []byte
		want []byte // nil: nothing left
	}{
		{"one message, not user", ping, ping},
		{"one user message", user, nil},
		{"compound without user", joinCompound([][]byte{ping, alive}), joinCompound([][]byte{ping, alive})},
		{"compound, user and one other", joinCompound([][]byte{ping, user}), ping},
		{"compound, user between two", joinCompound([][]byte{ping, user, alive, user2}), joinCompound([][]byte{ping, alive})},
		{"compound of user only", joinCompound([][]byte{user, user2}), nil},
		{"CRC and one user message", withCRC(user), nil},
		{"CRC, compressed compound", withCRC(mustCompress(t, joinCompound([][]byte{user, alive, ping}))), joinCompound([][]byte{alive, ping})},
		{"compressed, no user", mustCompress(t, joinCompound([][]byte{alive, ping})), mustCompress(t, joinCompound([][]byte{alive, ping}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := stripUserMessages(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got, "stripUserMessages(%v)", tt.in)
		})
	}
}

func TestStripUserMessagesRejectsGarbage(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short CRC", []byte{hasCrcMsg, 1, 2}},
		{"compound, lengths cut", []byte{compoundMsg, 3, 0}},
		{"compound, part cut", []byte{compoundMsg, 1, 0, 9, userMsg}},
		{"compressed garbage", []byte{compressMsg, 0xc1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stripUserMessages(tt.in)
			assert.Error(t, err, "stripUserMessages(%v)", tt.in)
		})
	}
}

func TestCompressRoundTrip(t *testing.T) {
	in := joinCompound([][]byte{{1, 2, 3}, {userMsg, 4}})
	c := mustCompress(t, in)
	require.Equal(t, byte(compressMsg), c[0])
	out, err := decompress(c[1:])
	require.NoError(t, err)
	assert.Equal(t, in, out)
}
