package peer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWireTimesRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
	}{
		{"zero time", time.Time{}},
		{"with nanoseconds", time.Unix(1_700_000_000, 123_456_789)},
		{"before 1970", time.Unix(-5, 7)},
		{"year 2100", time.Date(2100, 1, 1, 0, 0, 0, 1, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := unixNanos(tt.in)
			got := fromUnixNanos(n)
			assert.True(t, tt.in.Equal(got), "fromUnixNanos(unixNanos(%v)) = %v (via %d)", tt.in, got, n)
			assert.Equal(t, tt.in.IsZero(), got.IsZero(), "fromUnixNanos(unixNanos(%v)) = %v", tt.in, got)
		})
	}
}
