package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

// ErrorBody is the JSON shape of every error response:
//
//	{"error":{"code":"rate_limited","limit":"requests","message":"...","retry_after_seconds":12}}
//
// Code is stable and meant for programs; Message is for people. A 429's
// Limit names the limit that refused the request: "requests", "cost" or
// "concurrency".
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code              string `json:"code"`
	Limit             string `json:"limit,omitempty"`
	Message           string `json:"message"`
	RetryAfterSeconds int64  `json:"retry_after_seconds,omitempty"`
}

// TestResponse is the body of cmd/node's demo endpoint, GET /test, once the
// middleware admitted the request.
type TestResponse struct {
	OK     bool   `json:"ok"`
	Tier   string `json:"tier"`
	Status string `json:"status"`
	Node   string `json:"node"`
}

// WriteJSON writes v as a JSON response with status, not to be cached: how
// every endpoint here answers.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes the JSON error body {"error":{"code":…,"message":…}}
// with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

// refusal is what a 429 says refused the request: the limit (LimitRequests,
// LimitCost or LimitConcurrency), its value in force, and for a cost the
// unit it counts in.
type refusal struct {
	dim   string
	limit int
	unit  string
}

// writeRateLimited writes the 429 answer: the ErrorBody WriteJSON would
// write, built by hand, since a key over its limit gets it for most of its
// requests and encoding/json would cost more than the whole check.
func writeRateLimited(w http.ResponseWriter, tier string, why refusal, window int64, d bucket.Decision, now time.Time) {
	bp := bodies.Get().(*[]byte)
	b := append((*bp)[:0], `{"error":{"code":"rate_limited","limit":"`...)
	b = append(b, why.dim...)
	switch why.dim {
	case LimitCost:
		b = append(b, `","message":"cost limit of `...)
		b = strconv.AppendInt(b, int64(why.limit), 10)
		b = append(b, ' ')
		b = appendJSONText(b, why.unit)
		b = append(b, " per "...)
		b = strconv.AppendInt(b, window, 10)
	case LimitConcurrency:
		b = append(b, `","message":"concurrency limit of `...)
		b = strconv.AppendInt(b, int64(why.limit), 10)
		b = append(b, " requests at once"...)
	default:
		b = append(b, `","message":"rate limit of `...)
		b = strconv.AppendInt(b, int64(why.limit), 10)
		b = append(b, " requests per "...)
		b = strconv.AppendInt(b, window, 10)
	}
	if why.dim != LimitConcurrency {
		b = append(b, 's')
	}
	b = append(b, " exceeded for tier "...)
	b = appendJSONText(b, tier)
	b = append(b, `","retry_after_seconds":`...)
	b = strconv.AppendInt(b, retryAfter(d, now), 10)
	b = append(b, "}}\n"...)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"} // canonical keys: no Set, no lookups
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(b) // a Writer keeps nothing of b
	*bp = b
	bodies.Put(bp)
}

// bodies are the buffers writeRateLimited builds its bodies in.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// appendJSONText appends s to b as the inside of a JSON string: printable
// ASCII as it is, but for '"' and '\\' escaped; anything else as
// encoding/json would write it.
func appendJSONText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q[1:len(q)-1]...)
		}
	}
	return append(b, s...)
}
