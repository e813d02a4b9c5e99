package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEShowsThisExample: the README's "Embed it in your service"
// section is this file, complete, so what users copy is what CI builds.
func TestREADMEShowsThisExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	const marker = "<!-- examples/minimal/main.go -->\n```go\n"
	_, block, ok := strings.Cut(string(readme), marker)
	require.True(t, ok, "README.md has no %q block", strings.TrimSpace(marker))
	block, _, ok = strings.Cut(block, "```\n")
	require.True(t, ok, "the README's example block does not end")
	assert.Equal(t, string(src), block, "README.md's copy of examples/minimal/main.go differs from the file")
}
