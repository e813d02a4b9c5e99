package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
)

// The values -log-level and -log-format take.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"json", "text", "auto"}
)

// choiceFlag is a string flag that takes one of a few values, in any case;
// its error lists them, so that the flag package prints
// `invalid value "verbose" for flag -log-level: want debug, info, warn or error`.
type choiceFlag struct {
	value   *string
	choices []string
}

func (c choiceFlag) String() string {
	if c.value == nil {
		return ""
	}
	return *c.value
}

func (c choiceFlag) Set(s string) error {
	s = strings.ToLower(s)
	if !slices.Contains(c.choices, s) {
		last := len(c.choices) - 1
		return fmt.Errorf("want %s or %s", strings.Join(c.choices[:last], ", "), c.choices[last])
	}
	*c.value = s
	return nil
}

// newLogger builds the node's slog.Logger: JSON unless format is "text", or
// "auto" and w is a terminal.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
	default:
		return nil, fmt.Errorf("-log-format: %q is not json, text or auto", format)
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
