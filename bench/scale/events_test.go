package main

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventsTally(t *testing.T) {
	dir := t.TempDir()
	path, nodes := writeNodes(t, dir, nil, "a", "b")
	warn := func(msg, extra string) string {
		return string(bytes.Replace([]byte(logAt(0, msg, extra)), []byte(`"INFO"`), []byte(`"WARN"`), 1))
	}
	appendFile(t, nodes[0].Log,
		warn(msgPeerFailed, `"peer":"k"`), // killed: expected
		warn(msgPeerFailed, `"peer":"b"`), // alive: a false failure
		logAt(0, msgJoinFailed, ""),
		"panic: boom\n")
	appendFile(t, nodes[1].Log,
		warn(msgPeerFailed, `"peer":"k"`),
		warn(msgPeerFailed, `"peer":"a"`),
		warn(msgPeerFailed, `"peer":"a"`),
		warn("Failed fallback TCP ping: timeout 1s: read tcp 127.0.0.11:51000->127.0.0.12:24182: i/o timeout", ""),
		warn("Was able to connect to a over TCP but UDP probes failed", ""),
		warn("Was able to connect to b over TCP but UDP probes failed", ""))
	out := filepath.Join(dir, "events.json")
	require.NoError(t, run(t.Context(), []string{"events", "-nodes", path, "-killed", "k", "-out", out}, io.Discard, io.Discard))
	var got events
	require.NoError(t, readJSON(out, &got))
	assert.Equal(t, events{
		FalseFailures: 3,
		FalselyFailed: []string{"a", "b"},
		JoinRetries:   1,
		Warnings: []msgCount{
			{Msg: "WARN: peer failed", Count: 5},
			{Msg: "WARN: Was able to connect to <node> over TCP but UDP probes failed", Count: 2},
			{Msg: "WARN: Failed fallback TCP ping: timeout 1s: read tcp <addr>-><addr>: i/o timeout", Count: 1},
		},
		Crashes: 1,
	}, got)
}
