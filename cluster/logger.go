package cluster

import (
	"context"
	"log"
	"log/slog"
	"net"
	"strings"
)

// newMemberlistLogger returns the *log.Logger memberlist wants, writing each
// line to l at the level its "[ERR]", "[WARN]", "[INFO]" or "[DEBUG]" prefix
// names. memberlist's INFO lines (suspicions, failures) are routine
// membership chatter here and go out at Debug; this package logs the
// membership changes that matter itself.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(logWriter{log: l.With("component", "memberlist")}, "", 0)
}

// logWriter turns memberlist's log lines into slog records.
type logWriter struct {
	log *slog.Logger
}

// Write logs one line. It never fails, so memberlist never sees an error.
func (w logWriter) Write(p []byte) (int, error) {
	level, msg := parseLogLine(string(p))
	ctx := context.Background()
	if w.log.Enabled(ctx, level) {
		w.log.Log(ctx, level, msg)
	}
	return len(p), nil
}

// parseLogLine splits a memberlist log line into its level and its message,
// without the level prefix, the "memberlist: " prefix and the newline.
func parseLogLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	level := slog.LevelDebug
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "]"); ok {
			switch tag {
			case "ERR", "ERROR":
				level = slog.LevelError
			case "WARN":
				level = slog.LevelWarn
			}
			line = strings.TrimLeft(msg, " ")
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	if strings.Contains(line, net.ErrClosed.Error()) {
		level = slog.LevelDebug
	}
	return level, line
}
