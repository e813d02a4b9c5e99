package main

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestUnits(t *testing.T) {
	tests := []struct{ got, want string }{
		{num(1234567.8, 0), "1,234,568"},
		{num(-1234.5, 1), "-1,234.5"},
		{num(12, 0), "12"},
		{pct(0.25), "25.0%"},
		{pct(0.0123), "1.23%"},
		{pct(math.NaN()), "-"},
		{micros(3.14), "3.1 µs"},
		{micros(314), "314 µs"},
		{micros(3140), "3.14 ms"},
		{signedMicros(-250), "−250 µs"},
		{signedMicros(250), "+250 µs"},
		{millis(0.0042), "4.2 ms"},
		{millis(0.042), "42 ms"},
		{secs(1.234), "1.23 s"},
		{took(1.234), "1.23 s"},
		{took(0.0123), "12 ms"},
		{mib(1.5 * (1 << 20)), "1.5 MiB"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got)
	}
}
