package main

import (
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// memberlist v0.7.0's packet framing (net.go messageType, util.go
// makeCompoundMessage and compressPayload): the first byte of a packet says
// what follows. A packet is [hasCrc crc32] [compress] (compound | one
// message); a compound is a count byte, a big-endian uint16 length per
// part, then the parts. Labels and encryption are not used here.
const (
	suspectMsg  = 3
	aliveMsg    = 4
	deadMsg     = 5
	compoundMsg = 7
	userMsg     = 8
	compressMsg = 9
	hasCrcMsg   = 12

	lzwAlgo     = 0 // memberlist's compress.Algo for LZW
	lzwLitWidth = 8
	// maxDecompressed bounds a decompressed packet, as memberlist does.
	maxDecompressed = 1 << 20
)

// compressed is memberlist's compress struct, msgpack-encoded after the
// compressMsg byte.
type compressed struct {
	Algo int
	Buf  []byte
}

// stripUserMessages returns pkt without the user messages in it, or nil
// if nothing else was in it. A packet with no user message comes back as
// it was; one that had some comes back uncompressed and without its CRC,
// which memberlist accepts. It fails on a packet it cannot parse.
func stripUserMessages(pkt []byte) ([]byte, error) {
	parts, err := messages(pkt)
	if err != nil {
		return nil, err
	}
	kept := make([][]byte, 0, len(parts))
	for _, p := range parts {
		if p[0] != userMsg {
			kept = append(kept, p)
		}
	}
	switch {
	case len(kept) == len(parts):
		return pkt, nil
	case len(kept) == 0:
		return nil, nil
	case len(kept) == 1:
		return kept[0], nil
	}
	return joinCompound(kept), nil
}

// carriesBroadcast reports whether pkt holds a message that a member sends
// because it was queued for gossip: an alive, suspect or dead message, or a
// user message. Probes and acks alone do not count. A packet it cannot
// parse counts.
func carriesBroadcast(pkt []byte) bool {
	parts, err := messages(pkt)
	if err != nil {
		return true
	}
	for _, p := range parts {
		switch p[0] {
		case suspectMsg, aliveMsg, deadMsg, userMsg:
			return true
		}
	}
	return false
}

// messages returns the messages in pkt, each starting with its type byte:
// the parts of a compound message, or the one message.
func messages(pkt []byte) ([][]byte, error) {
	if len(pkt) == 0 {
		return nil, errors.New("empty packet")
	}
	body := pkt
	if body[0] == hasCrcMsg {
		if len(body) < 6 {
			return nil, errors.New("short packet with CRC")
		}
		body = body[5:]
	}
	if body[0] == compressMsg {
		var err error
		if body, err = decompress(body[1:]); err != nil {
			return nil, err
		}
		if len(body) == 0 {
			return nil, errors.New("empty compressed packet")
		}
	}
	if body[0] != compoundMsg {
		return [][]byte{body}, nil
	}
	parts, err := splitCompound(body[1:])
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		if len(p) == 0 {
			return nil, fmt.Errorf("compound message with empty part %d", i+1)
		}
	}
	return parts, nil
}

// decompress undoes memberlist's compressPayload on what follows the
// compressMsg byte.
func decompress(b []byte) ([]byte, error) {
	var c compressed
	if err := codec.NewDecoderBytes(b, &codec.MsgpackHandle{}).Decode(&c); err != nil {
		return nil, fmt.Errorf("decode compressed packet: %w", err)
	}
	if c.Algo != lzwAlgo {
		return nil, fmt.Errorf("compressed packet: unknown algorithm %d", c.Algo)
	}
	r := lzw.NewReader(bytes.NewReader(c.Buf), lzw.LSB, lzwLitWidth)
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxDecompressed+1))
	if err != nil {
		return nil, fmt.Errorf("decompress packet: %w", err)
	}
	if len(out) > maxDecompressed {
		return nil, fmt.Errorf("decompressed packet larger than %d bytes", maxDecompressed)
	}
	return out, nil
}

// compress is memberlist's compressPayload: the compressMsg byte and the
// msgpack-encoded LZW of b. The tests use it to build packets as memberlist
// sends them.
func compress(b []byte) ([]byte, error) {
	var z bytes.Buffer
	w := lzw.NewWriter(&z, lzw.LSB, lzwLitWidth)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	out := bytes.NewBuffer([]byte{compressMsg})
	if err := codec.NewEncoder(out, &codec.MsgpackHandle{}).Encode(compressed{Algo: lzwAlgo, Buf: z.Bytes()}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// splitCompound returns the parts of a compound message, given what follows
// its compoundMsg byte.
func splitCompound(b []byte) ([][]byte, error) {
	if len(b) < 1 {
		return nil, errors.New("compound message without a count")
	}
	n := int(b[0])
	b = b[1:]
	if len(b) < 2*n {
		return nil, errors.New("compound message with truncated lengths")
	}
	parts := make([][]byte, n)
	lengths, b := b[:2*n], b[2*n:]
	for i := range parts {
		l := int(binary.BigEndian.Uint16(lengths[2*i:]))
		if len(b) < l {
			return nil, fmt.Errorf("compound message truncated in part %d of %d", i+1, n)
		}
		parts[i], b = b[:l], b[l:]
	}
	return parts, nil
}

// joinCompound is memberlist's makeCompoundMessage.
func joinCompound(parts [][]byte) []byte {
	out := []byte{compoundMsg, byte(len(parts))}
	for _, p := range parts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
	}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
