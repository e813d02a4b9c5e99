package api

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tierlimit/tierlimit/bucket"
)

// TestRateLimitedBodyIsWhatWriteJSONWrites: the 429 body built by hand is
// byte for byte the ErrorBody encoding/json writes, whatever the tier's
// name holds.
func TestRateLimitedBodyIsWhatWriteJSONWrites(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	d := bucket.Decision{Limit: 20, ResetAt: now.Add(30 * time.Second), RetryAt: now.Add(2500 * time.Millisecond)}
	for _, tier := range []string{"free", "pro-2", `quo"te`, `back\slash`, "tab\there", "<html>&", "ünïcode", "\xff\xfe", ""} {
		for _, c := range []struct {
			why     refusal
			message string
		}{
			{refusal{LimitRequests, 20, ""}, "rate limit of 20 requests per 60s exceeded for tier " + tier},
			{refusal{LimitCost, 600, "audio-seconds"}, "cost limit of 600 audio-seconds per 60s exceeded for tier " + tier},
			{refusal{LimitConcurrency, 2, ""}, "concurrency limit of 2 requests at once exceeded for tier " + tier},
		} {
			got := httptest.NewRecorder()
			writeRateLimited(got, tier, c.why, 60, d, now)
			want := httptest.NewRecorder()
			WriteJSON(want, http.StatusTooManyRequests, ErrorBody{Error: ErrorDetail{
				Code:              "rate_limited",
				Limit:             c.why.dim,
				Message:           c.message,
				RetryAfterSeconds: 3,
			}})
			assert.Equal(t, want.Body.String(), got.Body.String(), "tier %s", strconv.Quote(tier))
			assert.Equal(t, want.Header(), got.Header(), "tier %s", strconv.Quote(tier))
			assert.Equal(t, http.StatusTooManyRequests, got.Code)
		}
	}
}
