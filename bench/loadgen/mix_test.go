package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		name, in string
		want     []mixEntry
		wantErr  string
	}{
		{name: "default", in: defaultMix, want: []mixEntry{{"free", 70}, {"pro", 25}, {"enterprise", 5}}},
		{name: "one tier", in: "pro=100", want: []mixEntry{{"pro", 100}}},
		{name: "spaces and trailing comma", in: " free = 60 , pro=40 ,", want: []mixEntry{{"free", 60}, {"pro", 40}}},
		{name: "zero share kept", in: "free=100,pro=0", want: []mixEntry{{"free", 100}, {"pro", 0}}},
		{name: "empty", in: "", wantErr: "mix: empty, want for example free=70,pro=25,enterprise=5"},
		{name: "no percent", in: "free", wantErr: `mix "free": want tier=percent`},
		{name: "no tier", in: "=100", wantErr: `mix "=100": want tier=percent`},
		{name: "not a number", in: "free=x", wantErr: `mix "free=x": percent must be a whole number from 0 to 100`},
		{name: "over 100", in: "free=101", wantErr: `mix "free=101": percent must be a whole number from 0 to 100`},
		{name: "negative", in: "free=-1,pro=101", wantErr: `mix "free=-1": percent must be a whole number from 0 to 100`},
		{name: "twice", in: "free=50,free=50", wantErr: `mix: tier "free" given twice`},
		{name: "sum", in: "free=50,pro=40", wantErr: "mix: percentages add up to 90, want 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMix(tt.in)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr, "parseMix(%q)", tt.in)
				return
			}
			require.NoError(t, err, "parseMix(%q)", tt.in)
			assert.Equal(t, tt.want, got, "parseMix(%q)", tt.in)
		})
	}
}

func TestInterleave(t *testing.T) {
	tests := []struct {
		weights []int
		want    []int
	}{
		{weights: []int{100}, want: []int{0}},
		{weights: []int{0, 100}, want: []int{1}},
		{weights: []int{50, 50}, want: []int{0, 1}},
		{weights: []int{2, 1}, want: []int{0, 1, 0}},
		{weights: []int{60, 30, 10}, want: []int{0, 1, 0, 0, 1, 0, 2, 0, 1, 0}},
		{weights: []int{70, 25, 5}, want: []int{0, 1, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			assert.Equal(t, tt.want, interleave(tt.weights), "interleave(%v)", tt.weights)
		})
	}
}

func TestSplitKeys(t *testing.T) {
	tests := []struct {
		n       int
		weights []int
		want    []int
		wantErr string
	}{
		{n: 100, weights: []int{70, 25, 5}, want: []int{70, 25, 5}},
		{n: 10, weights: []int{70, 25, 5}, want: []int{6, 3, 1}},
		{n: 5, weights: []int{70, 25, 5}, want: []int{3, 1, 1}},
		{n: 3, weights: []int{70, 25, 5}, want: []int{1, 1, 1}},
		{n: 7, weights: []int{50, 50}, want: []int{4, 3}},
		{n: 1, weights: []int{100}, want: []int{1}},
		{n: 2, weights: []int{70, 25, 5}, wantErr: "-keys 2 is fewer than the 3 tiers in the mix"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n, tt.weights), func(t *testing.T) {
			got, err := splitKeys(tt.n, tt.weights)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got, "splitKeys(%d, %v)", tt.n, tt.weights)
		})
	}
}
