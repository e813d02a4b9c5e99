package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Record is one request a client sent and what came back.
type Record struct {
	Variant string `json:"variant"`
	// Key is the key's role in the run, such as "pro" or "pro witness";
	// Capture.Keys maps it to the API key.
	Key  string `json:"key"`
	Seq  int    `json:"seq"`
	Node string `json:"node"`
	// Sent is when the client sent the request, Done when it had the whole
	// answer or gave up.
	Sent time.Time `json:"sent"`
	Done time.Time `json:"done"`
	// Status is the HTTP status; 0 when no answer came (see Err).
	Status int    `json:"status"`
	Err    string `json:"err,omitempty"`
	// Probe marks a request sent to the key's owner to read its count.
	Probe bool    `json:"probe,omitempty"`
	H     Headers `json:"h"`
}

// Admitted reports whether the request was answered 200.
func (r Record) Admitted() bool { return r.Status == http.StatusOK }

// Refused reports whether the request was answered 429.
func (r Record) Refused() bool { return r.Status == http.StatusTooManyRequests }

// Answered reports whether an answer came at all.
func (r Record) Answered() bool { return r.Status != 0 }

// Headers are the rate-limit fields of one response. A number the
// response did not carry, or carried in a form that does not parse, is -1.
type Headers struct {
	Limit      int   `json:"limit"`       // X-RateLimit-Limit
	Remaining  int   `json:"remaining"`   // X-RateLimit-Remaining
	Reset      int64 `json:"reset"`       // X-RateLimit-Reset, Unix seconds
	RetryAfter int   `json:"retry_after"` // Retry-After, seconds
	// Policy and RateLimit are the IETF draft's fields as sent.
	Policy    string `json:"policy,omitempty"`
	RateLimit string `json:"ratelimit,omitempty"`
}

// noHeaders is Headers for a request that got no answer.
var noHeaders = Headers{Limit: -1, Remaining: -1, Reset: -1, RetryAfter: -1}

// readHeaders takes the rate-limit fields out of h.
func readHeaders(h http.Header) Headers {
	return Headers{
		Limit:      int(number(h.Get("X-RateLimit-Limit"))),
		Remaining:  int(number(h.Get("X-RateLimit-Remaining"))),
		Reset:      number(h.Get("X-RateLimit-Reset")),
		RetryAfter: int(number(h.Get("Retry-After"))),
		Policy:     h.Get("RateLimit-Policy"),
		RateLimit:  h.Get("RateLimit"),
	}
}

// number parses a non-negative decimal header value; -1 if s is not one.
func number(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// sfParams returns the parameters of a structured-field list member such
// as `"pro";r=5;t=3`: the item (a String, whose quotes and escapes it
// skips, or a Token) and then ";name=value" pairs. Values that are not
// non-negative integers are -1; a parameter without a value is 1, as the
// Boolean true it stands for. It reports false if s does not start with
// an item.
func sfParams(s string) (map[string]int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, false
	}
	i := 0
	if s[0] == '"' {
		for i = 1; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
			}
		}
		if i >= len(s) {
			return nil, false
		}
		i++
	} else {
		for i < len(s) && s[i] != ';' {
			i++
		}
	}
	out := map[string]int64{}
	for _, p := range strings.Split(s[i:], ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, value, ok := strings.Cut(p, "=")
		if !ok {
			out[name] = 1
			continue
		}
		out[name] = number(value)
	}
	return out, true
}

// headerProblems returns what is wrong with the rate-limit fields of one
// answer with status, received at done, by the contract in README.md:
// every field present, the draft's fields saying what the X- fields say,
// Remaining within Limit, and on a 429 a Retry-After of at least 1 that
// points at the moment X-RateLimit-Reset names (both round up, so they may
// differ by a second). It checks only what one answer can show; whether
// the promises held is promise.go's.
func headerProblems(status int, h Headers, done time.Time) []string {
	var out []string
	if h.Limit < 0 || h.Remaining < 0 || h.Reset < 0 || h.Policy == "" || h.RateLimit == "" {
		return []string{"a rate-limit field missing"}
	}
	if h.Remaining > h.Limit {
		out = append(out, "Remaining above Limit")
	}
	if p, ok := sfParams(h.Policy); !ok || p["q"] != int64(h.Limit) {
		out = append(out, "RateLimit-Policy q is not X-RateLimit-Limit")
	}
	rl, ok := sfParams(h.RateLimit)
	if !ok || rl["r"] != int64(h.Remaining) {
		out = append(out, "RateLimit r is not X-RateLimit-Remaining")
	}
	switch status {
	case http.StatusOK:
		if h.RetryAfter >= 0 {
			out = append(out, "Retry-After on a 200")
		}
	case http.StatusTooManyRequests:
		if h.RetryAfter < 1 {
			out = append(out, "Retry-After missing or under 1 on a 429")
			break
		}
		if t, ok := rl["t"]; !ok || t != int64(h.RetryAfter) {
			out = append(out, "RateLimit t is not Retry-After on a 429")
		}
		// Reset is ceil(moment), Retry-After ceil(moment − decided),
		// and the decision came before done.
		if d := h.Reset - int64(h.RetryAfter) - done.Unix(); d < -1 || d > 1 {
			out = append(out, fmt.Sprintf("X-RateLimit-Reset and Retry-After %+d s apart", d))
		}
	}
	return out
}
