// Package mdsection replaces the generated part of a markdown page: what
// lies between a begin and an end marker, such as <!-- scale:begin --> and
// <!-- scale:end -->, which the bench programs rewrite after each full run
// while the rest of the page is written by hand.
package mdsection

import (
	"bytes"
	"fmt"
	"strings"
)

// Replace returns doc with the text between begin and end replaced by md,
// which starts on the line after begin and ends with one newline before
// end. It returns an error, and no page, if doc lacks either marker or has
// them out of order.
func Replace(doc []byte, begin, end, md string) ([]byte, error) {
	i := bytes.Index(doc, []byte(begin))
	j := bytes.Index(doc, []byte(end))
	if i < 0 || j < 0 || j < i {
		return nil, fmt.Errorf("want %s and then %s", begin, end)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(begin)])
	out.WriteString("\n" + strings.TrimRight(md, "\n") + "\n")
	out.Write(doc[j:])
	return out.Bytes(), nil
}
