package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Units. Each returns "-" for NaN.

func secs(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.2f s", s)
}

// took shows seconds in s from one second up, else in ms.
func took(s float64) string {
	if s >= 1 {
		return secs(s)
	}
	return millis(s)
}

func millis(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	ms := s * 1000
	if ms < 10 {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// micros shows a time given in µs, in µs or ms.
func micros(us float64) string {
	switch {
	case math.IsNaN(us):
		return "-"
	case math.Abs(us) >= 1000:
		return fmt.Sprintf("%.2f ms", us/1000)
	case math.Abs(us) >= 10:
		return fmt.Sprintf("%.0f µs", us)
	default:
		return fmt.Sprintf("%.1f µs", us)
	}
}

// signedMicros is micros with a sign: + or − (a minus sign, not a hyphen).
func signedMicros(us float64) string {
	if math.IsNaN(us) {
		return "-"
	}
	if us < 0 {
		return "−" + micros(-us)
	}
	return "+" + micros(us)
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func whole(v float64) string { return num(v, 0) }

// pct shows a share as a percentage: 0.25 as "25.0%", 0.0123 as "1.23%".
func pct(share float64) string {
	if math.IsNaN(share) {
		return "-"
	}
	if math.Abs(share) < 0.1 {
		return fmt.Sprintf("%.2f%%", share*100)
	}
	return fmt.Sprintf("%.1f%%", share*100)
}

// num shows v with digits decimals and thousands separated by commas.
func num(v float64, digits int) string {
	if math.IsNaN(v) {
		return "-"
	}
	s := fmt.Sprintf("%.*f", digits, v)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var groups []string
	for len(intPart) > 3 {
		groups = append(groups, intPart[len(intPart)-3:])
		intPart = intPart[:len(intPart)-3]
	}
	groups = append(groups, intPart)
	slices.Reverse(groups)
	s = strings.Join(groups, ",")
	if neg {
		s = "-" + s
	}
	if frac != "" {
		s += "." + frac
	}
	return s
}
