package cluster

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		line      string
		wantLevel slog.Level
		wantMsg   string
	}{
		{"[ERR] memberlist: Failed to send ping\n", slog.LevelError, "Failed to send ping"},
		{"[WARN] memberlist: Refuting a dead message\n", slog.LevelWarn, "Refuting a dead message"},
		{"[INFO] memberlist: Marking n2 as failed\n", slog.LevelDebug, "Marking n2 as failed"},
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[ERR] Failed to shutdown transport: x\n", slog.LevelError, "Failed to shutdown transport: x"},
		{"no prefix at all", slog.LevelDebug, "no prefix at all"},
		// A probe that races this node's own shutdown: not an error.
		{"[ERR] memberlist: Failed to send UDP ping: write udp 127.0.0.1:1->127.0.0.1:2: use of closed network connection\n",
			slog.LevelDebug, "Failed to send UDP ping: write udp 127.0.0.1:1->127.0.0.1:2: use of closed network connection"},
	}
	for _, tt := range tests {
		level, msg := parseLogLine(tt.line)
		assert.Equal(t, tt.wantLevel, level, "parseLogLine(%q) level", tt.line)
		assert.Equal(t, tt.wantMsg, msg, "parseLogLine(%q) message", tt.line)
	}
}

func TestMemberlistLoggerLevels(t *testing.T) {
	var logs logBuffer
	l := newMemberlistLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	l.Printf("[DEBUG] memberlist: chatter")
	l.Printf("[WARN] memberlist: something odd")
	l.Printf("[ERR] memberlist: something broke")
	assert.Zero(t, logs.count("chatter"), "debug line logged at Warn level; logs:\n%s", logs.String())
	assert.Equal(t, 1, logs.count("level=WARN", "component=memberlist", `msg="something odd"`), "logs:\n%s", logs.String())
	assert.Equal(t, 1, logs.count("level=ERROR", `msg="something broke"`), "logs:\n%s", logs.String())
}
