package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The smallest part of RESP2 (the Redis serialization protocol) this
// benchmark needs: commands go out as arrays of bulk strings, replies come
// back as one of five types. See https://redis.io/docs/latest/develop/reference/protocol-spec/.

// Bounds on what a reply may hold. Our replies are a few integers or a
// 40-byte script digest; anything far larger is a protocol error, not a
// reason to allocate.
const (
	maxBulkLen  = 1 << 20
	maxArrayLen = 1 << 10
	maxDepth    = 4
)

// errProtocol is wrapped by every error about a malformed reply. After it
// the connection is out of step and must be closed.
var errProtocol = errors.New("redis protocol error")

// kind is the type of a RESP2 reply.
type kind uint8

const (
	kindSimple  kind = iota + 1 // +OK
	kindError                   // -ERR message
	kindInteger                 // :42
	kindBulk                    // $3\r\nabc
	kindArray                   // *2\r\n…
	kindNull                    // $-1 or *-1
)

// reply is one decoded RESP2 reply. str holds a simple string, an error
// message or a bulk string; n an integer; elems an array's elements.
type reply struct {
	kind  kind
	str   string
	n     int64
	elems []reply
}

// replyError is an error reply from the server (a "-" line), such as
// "NOSCRIPT No matching script". The connection stays usable after it.
type replyError struct {
	msg string
}

func (e *replyError) Error() string { return "redis: " + e.msg }

// appendArrayHeader appends the header of an array of n elements.
func appendArrayHeader(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// appendBulk appends s as a bulk string.
func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// appendBulk2 appends prefix+s as one bulk string without building it.
func appendBulk2(b []byte, prefix, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(prefix)+len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, prefix...)
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// appendBulkInt appends v in decimal as a bulk string, which is how Redis
// takes numeric arguments.
func appendBulkInt(b []byte, v int64) []byte {
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], v, 10)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(d)), 10)
	b = append(b, '\r', '\n')
	b = append(b, d...)
	return append(b, '\r', '\n')
}

// appendCommand appends a whole command: an array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = appendArrayHeader(b, len(args))
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

// readReply reads one reply from r. An error reply is returned as a reply
// of kindError, not as an error: the error return is for I/O failures and
// malformed input (wrapping errProtocol), after which r is unusable.
func readReply(r *bufio.Reader) (reply, error) {
	return readDepth(r, 0)
}

func readDepth(r *bufio.Reader, depth int) (reply, error) {
	line, err := readLine(r)
	if err != nil {
		return reply{}, err
	}
	if len(line) == 0 {
		return reply{}, fmt.Errorf("%w: empty line", errProtocol)
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return reply{kind: kindSimple, str: string(body)}, nil
	case '-':
		return reply{kind: kindError, str: string(body)}, nil
	case ':':
		n, err := parseInt(body)
		if err != nil {
			return reply{}, err
		}
		return reply{kind: kindInteger, n: n}, nil
	case '$':
		n, err := parseLen(body, maxBulkLen)
		if err != nil || n < 0 {
			return reply{kind: kindNull}, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return reply{}, fmt.Errorf("%w: bulk string of %d bytes: %w", errProtocol, n, unexpectedEOF(err))
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return reply{}, fmt.Errorf("%w: bulk string of %d bytes not followed by CRLF", errProtocol, n)
		}
		return reply{kind: kindBulk, str: string(buf[:n])}, nil
	case '*':
		n, err := parseLen(body, maxArrayLen)
		if err != nil || n < 0 {
			return reply{kind: kindNull}, err
		}
		if depth >= maxDepth {
			return reply{}, fmt.Errorf("%w: arrays nested deeper than %d", errProtocol, maxDepth)
		}
		elems := make([]reply, n)
		for i := range elems {
			if elems[i], err = readDepth(r, depth+1); err != nil {
				return reply{}, err
			}
		}
		return reply{kind: kindArray, elems: elems}, nil
	}
	return reply{}, fmt.Errorf("%w: unknown type byte %q", errProtocol, line[0])
}

// readLine returns the next line without its CRLF. The slice is valid until
// the next read from r.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, r.Size())
	case err != nil:
		return nil, unexpectedEOF(err)
	case len(line) < 2 || line[len(line)-2] != '\r':
		return nil, fmt.Errorf("%w: line not ended by CRLF", errProtocol)
	}
	return line[:len(line)-2], nil
}

// parseLen parses the length of a bulk string or an array: -1 (null) or 0
// to most.
func parseLen(b []byte, most int64) (int, error) {
	n, err := parseInt(b)
	if err != nil {
		return 0, err
	}
	if n < -1 || n > most {
		return 0, fmt.Errorf("%w: length %d out of range -1..%d", errProtocol, n, most)
	}
	return int(n), nil
}

// parseInt parses a RESP integer: an optional minus sign and 1 to 18
// decimal digits, without allocating.
func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("%w: bad integer %q", errProtocol, b)
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad integer %q", errProtocol, b)
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// unexpectedEOF turns io.EOF in the middle of a reply into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
