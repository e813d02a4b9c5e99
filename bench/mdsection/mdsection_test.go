package mdsection

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplace(t *testing.T) {
	const b, e = "<!-- x:begin -->", "<!-- x:end -->"
	doc := []byte("# Title\n\nintro\n\n" + b + "\nold\ntable\n" + e + "\n\nafter\n")
	got, err := Replace(doc, b, e, "new\n\n")
	require.NoError(t, err)
	assert.Equal(t, "# Title\n\nintro\n\n"+b+"\nnew\n"+e+"\n\nafter\n", string(got))

	again, err := Replace(got, b, e, "new")
	require.NoError(t, err)
	assert.Equal(t, string(got), string(again), "the same section twice gives the same page")

	for name, bad := range map[string]string{
		"no markers":   "# Title\n",
		"no end":       b + "\nold\n",
		"out of order": e + "\n" + b + "\n",
	} {
		_, err := Replace([]byte(bad), b, e, "new")
		assert.EqualError(t, err, "want "+b+" and then "+e, name)
	}
}
