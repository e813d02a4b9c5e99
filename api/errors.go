package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

// ErrorBody is the JSON shape of every error response:
//
//	{"error":{"code":"rate_limited","message":"...","retry_after_seconds":12}}
//
// Code is stable and meant for programs; Message is for people.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code              string `json:"code"`
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

func writeRateLimited(w http.ResponseWriter, tier string, limit int, window int64, d bucket.Decision, now time.Time) {
	ra := retryAfter(d, now)
	WriteJSON(w, http.StatusTooManyRequests, ErrorBody{Error: ErrorDetail{
		Code: "rate_limited",
		Message: "rate limit of " + strconv.Itoa(limit) + " requests per " + strconv.FormatInt(window, 10) +
			"s exceeded for tier " + tier,
		RetryAfterSeconds: ra,
	}})
}
