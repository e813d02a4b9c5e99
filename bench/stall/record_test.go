package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestReadHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "150")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", "1767323096")
	h.Set("Retry-After", "56")
	h.Set("RateLimit-Policy", `"pro";q=150;w=60`)
	h.Set("RateLimit", `"pro";r=0;t=56`)
	assert.Equal(t, Headers{Limit: 150, Remaining: 0, Reset: 1767323096, RetryAfter: 56,
		Policy: `"pro";q=150;w=60`, RateLimit: `"pro";r=0;t=56`}, readHeaders(h))

	h = http.Header{}
	h.Set("X-RateLimit-Limit", "lots")
	assert.Equal(t, noHeaders, readHeaders(h), "readHeaders: absent or unreadable numbers are -1")
}

func TestSFParams(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]int64
		ok   bool
	}{
		{`"pro";r=5;t=3`, map[string]int64{"r": 5, "t": 3}, true},
		{`"p;r=9\"x";q=150;w=60`, map[string]int64{"q": 150, "w": 60}, true},
		{`pro;r=2`, map[string]int64{"r": 2}, true},
		{`"pro";r=-1;flag`, map[string]int64{"r": -1, "flag": 1}, true},
		{`"pro`, nil, false},
		{``, nil, false},
	}
	for _, tt := range tests {
		got, ok := sfParams(tt.in)
		assert.Equal(t, tt.ok, ok, "sfParams(%q) ok", tt.in)
		assert.Equal(t, tt.want, got, "sfParams(%q)", tt.in)
	}
}

func TestHeaderProblems(t *testing.T) {
	done := time.Unix(1000, 500_000_000)
	good200 := Headers{Limit: 150, Remaining: 5, Reset: 1117, RetryAfter: -1, Policy: `"pro";q=150;w=60`, RateLimit: `"pro";r=5;t=116`}
	good429 := Headers{Limit: 150, Remaining: 0, Reset: 1056, RetryAfter: 56, Policy: `"pro";q=150;w=60`, RateLimit: `"pro";r=0;t=56`}
	tests := []struct {
		name   string
		status int
		h      func(h Headers) Headers
		want   []string
	}{
		{"a good 200", 200, nil, nil},
		{"a good 429", 429, nil, nil},
		{"a field missing", 200, func(h Headers) Headers { h.Policy = ""; return h }, []string{"a rate-limit field missing"}},
		{"q not Limit", 200, func(h Headers) Headers { h.Limit = 40; return h }, []string{"RateLimit-Policy q is not X-RateLimit-Limit"}},
		{"r not Remaining, and above Limit", 200, func(h Headers) Headers { h.Remaining = 151; return h },
			[]string{"Remaining above Limit", "RateLimit r is not X-RateLimit-Remaining"}},
		{"Retry-After on a 200", 200, func(h Headers) Headers { h.RetryAfter = 3; return h }, []string{"Retry-After on a 200"}},
		{"no Retry-After on a 429", 429, func(h Headers) Headers { h.RetryAfter = -1; return h }, []string{"Retry-After missing or under 1 on a 429"}},
		{"t not Retry-After", 429, func(h Headers) Headers { h.RateLimit = `"pro";r=0;t=55`; return h }, []string{"RateLimit t is not Retry-After on a 429"}},
		{"Reset far from Retry-After", 429, func(h Headers) Headers { h.Reset += 5; return h }, []string{"X-RateLimit-Reset and Retry-After +5 s apart"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := good200
			if tt.status == 429 {
				h = good429
			}
			if tt.h != nil {
				h = tt.h(h)
			}
			assert.Equal(t, tt.want, headerProblems(tt.status, h, done), "headerProblems(%d, %+v)", tt.status, h)
		})
	}
}
