package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendCommand(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no args", nil, "*0\r\n"},
		{"ping", []string{"PING"}, "*1\r\n$4\r\nPING\r\n"},
		{"empty arg", []string{"GET", ""}, "*2\r\n$3\r\nGET\r\n$0\r\n\r\n"},
		{"binary safe", []string{"SET", "k", "a\r\nb"}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendCommand(nil, tt.args...))
			assert.Equal(t, tt.want, got, "appendCommand(%q)", tt.args)
		})
	}
}

func TestAppendBulkInt(t *testing.T) {
	for _, tt := range []struct {
		v    int64
		want string
	}{
		{0, "$1\r\n0\r\n"},
		{-1, "$2\r\n-1\r\n"},
		{1_700_000_000_123, "$13\r\n1700000000123\r\n"},
	} {
		assert.Equal(t, tt.want, string(appendBulkInt(nil, tt.v)), "appendBulkInt(%d)", tt.v)
	}
	assert.Equal(t, "$5\r\ntl:ab\r\n", string(appendBulk2(nil, "tl:", "ab")), `appendBulk2("tl:", "ab")`)
}

func TestAppendEvalSHA(t *testing.T) {
	c := newChecker(newPool("127.0.0.1:0", 1), time.Minute, time.Second, nil)
	now := time.UnixMilli(1_700_000_000_123)
	got := string(c.appendEvalSHA(nil, now, "k1", 1, 20))
	want := "*8\r\n$7\r\nEVALSHA\r\n$40\r\n" + c.sha + "\r\n$1\r\n1\r\n$5\r\ntl:k1\r\n" +
		"$13\r\n1700000000123\r\n$5\r\n60000\r\n$1\r\n1\r\n$2\r\n20\r\n"
	assert.Equal(t, want, got, "appendEvalSHA(t, k1, 1, 20)")

	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() { buf = c.appendEvalSHA(buf[:0], now, "k1", 1, 20) })
	assert.Zero(t, allocs, "appendEvalSHA into a large enough buffer: allocs per run")
}

func read(t *testing.T, in string) (reply, error) {
	t.Helper()
	return readReply(bufio.NewReaderSize(strings.NewReader(in), 64))
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want reply
	}{
		{"simple", "+OK\r\n", reply{kind: kindSimple, str: "OK"}},
		{"error", "-NOSCRIPT No matching script\r\n", reply{kind: kindError, str: "NOSCRIPT No matching script"}},
		{"integer", ":42\r\n", reply{kind: kindInteger, n: 42}},
		{"negative integer", ":-7\r\n", reply{kind: kindInteger, n: -7}},
		{"bulk", "$5\r\nhello\r\n", reply{kind: kindBulk, str: "hello"}},
		{"bulk with CRLF inside", "$4\r\na\r\nb\r\n", reply{kind: kindBulk, str: "a\r\nb"}},
		{"empty bulk", "$0\r\n\r\n", reply{kind: kindBulk, str: ""}},
		{"null bulk", "$-1\r\n", reply{kind: kindNull}},
		{"null array", "*-1\r\n", reply{kind: kindNull}},
		{"empty array", "*0\r\n", reply{kind: kindArray, elems: []reply{}}},
		{"script result", "*4\r\n:1\r\n:19\r\n:1700000060123\r\n:0\r\n", reply{kind: kindArray, elems: []reply{
			{kind: kindInteger, n: 1}, {kind: kindInteger, n: 19}, {kind: kindInteger, n: 1700000060123}, {kind: kindInteger, n: 0},
		}}},
		{"nested", "*2\r\n*1\r\n+a\r\n$-1\r\n", reply{kind: kindArray, elems: []reply{
			{kind: kindArray, elems: []reply{{kind: kindSimple, str: "a"}}}, {kind: kindNull},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := read(t, tt.in)
			require.NoError(t, err, "readReply(%q)", tt.in)
			assert.Equal(t, tt.want, got, "readReply(%q)", tt.in)
		})
	}
}

func TestReadReplyKeepsStepAcrossReplies(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("$3\r\nabc\r\n:5\r\n-ERR x\r\n"))
	var got []reply
	for range 3 {
		rep, err := readReply(r)
		require.NoError(t, err)
		got = append(got, rep)
	}
	assert.Equal(t, []reply{{kind: kindBulk, str: "abc"}, {kind: kindInteger, n: 5}, {kind: kindError, str: "ERR x"}}, got)
	_, err := readReply(r)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "readReply at the end of input")
}

func TestReadReplyRejectsMalformed(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"unknown type", "?x\r\n", errProtocol},
		{"empty line", "\r\n", errProtocol},
		{"LF only", "+OK\n", errProtocol},
		{"bad integer", ":4x\r\n", errProtocol},
		{"empty integer", ":\r\n", errProtocol},
		{"integer too long", ":1234567890123456789\r\n", errProtocol},
		{"negative length", "$-2\r\n", errProtocol},
		{"bulk too long", "$1048577\r\n", errProtocol},
		{"array too long", "*1025\r\n", errProtocol},
		{"bulk without CRLF", "$3\r\nabcde", errProtocol},
		{"nested too deep", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", errProtocol},
		{"line longer than the buffer", "+" + strings.Repeat("a", 100) + "\r\n", errProtocol},
		{"truncated line", "+OK", io.ErrUnexpectedEOF},
		{"truncated bulk", "$5\r\nab", io.ErrUnexpectedEOF},
		{"truncated array", "*2\r\n:1\r\n", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := read(t, tt.in)
			assert.ErrorIs(t, err, tt.want, "readReply(%q) = %+v, %v", tt.in, got, err)
		})
	}
}

func TestDecision(t *testing.T) {
	ints := func(ns ...int64) reply {
		r := reply{kind: kindArray}
		for _, n := range ns {
			r.elems = append(r.elems, reply{kind: kindInteger, n: n})
		}
		return r
	}
	d, err := decision(ints(1, 19, 1_700_000_060_000, 0), 20)
	require.NoError(t, err)
	assert.True(t, d.Allowed, "decision(allowed).Allowed")
	assert.Equal(t, 20, d.Limit)
	assert.Equal(t, 19, d.Remaining)
	assert.Equal(t, time.UnixMilli(1_700_000_060_000), d.ResetAt)
	assert.True(t, d.RetryAt.IsZero(), "RetryAt of an admitted hit = %v, want zero", d.RetryAt)

	d, err = decision(ints(0, 0, 1_700_000_060_000, 1_700_000_061_500), 20)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "decision(refused).Allowed")
	assert.Equal(t, time.UnixMilli(1_700_000_061_500), d.RetryAt)

	for _, bad := range []reply{
		{kind: kindNull},
		ints(1, 2, 3),
		{kind: kindArray, elems: []reply{{kind: kindInteger}, {kind: kindBulk}, {kind: kindInteger}, {kind: kindInteger}}},
	} {
		_, err := decision(bad, 20)
		assert.ErrorIs(t, err, errProtocol, "decision(%+v)", bad)
	}
}

func TestReplyErrorIsKeptApart(t *testing.T) {
	err := error(&replyError{msg: "NOSCRIPT No matching script"})
	assert.True(t, isReplyError(err), "isReplyError(%v)", err)
	assert.False(t, isReplyError(errors.New("x")), "isReplyError(plain error)")
	assert.EqualError(t, err, "redis: NOSCRIPT No matching script")
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n:1\r\n$1\r\na\r\n", "*-1\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := readReply(bufio.NewReaderSize(strings.NewReader(in), 64))
		if err != nil {
			if !errors.Is(err, errProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("readReply(%q) error %v, want errProtocol or io.ErrUnexpectedEOF", in, err)
			}
			return
		}
		if rep.kind < kindSimple || rep.kind > kindNull {
			t.Fatalf("readReply(%q) = kind %d, want a known kind", in, rep.kind)
		}
	})
}
