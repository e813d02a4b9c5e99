package api

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// TestAuthorizeKeepsAReservationUntilItsSettleCall: /authorize asked to
// settle later holds the estimate and the slot and names the reservation;
// the settle call settles at the actual cost and frees the slot, once, for
// the key that made it only; without the ask the Job ends at once; a
// reservation never settled ends at MaxJobDuration with its estimate.
func TestAuthorizeKeepsAReservationUntilItsSettleCall(t *testing.T) {
	c := newClock()
	local := Local{Store: bucket.New(bucket.Config{Window: time.Minute}), Slots: bucket.NewSlots()}
	lim := NewLimiter(Config{Keys: fakeKeys{"k": gpu, "free-1": free}, Checker: local, Spender: local, CostUnit: "s",
		Health: health.NewHolder("a"), Window: time.Minute, Now: c.Now, MaxJobDuration: time.Hour})
	authorize, settle := lim.Authorize(), lim.Settle()
	ask := func(estimate int, later bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/authorize/v1/transcribe", nil)
		r.Header.Set("X-API-Key", "k")
		r.Header.Set(HeaderCost, strconv.Itoa(estimate))
		if later {
			r.Header.Set(HeaderSettle, "later")
		}
		w := httptest.NewRecorder()
		authorize.ServeHTTP(w, r)
		return w
	}
	settleCall := func(key, id string, headers ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/system/settle", nil)
		r.Header.Set("X-API-Key", key)
		r.Header.Set(HeaderReservation, id)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		w := httptest.NewRecorder()
		settle.ServeHTTP(w, r)
		return w
	}
	cost := func() int { return 100 - local.Store.Take(c.Now(), config.CostKey("k"), 0, 100).Remaining }
	slots := func() int { return local.Slots.Held(c.Now(), "k") }

	w := ask(30, false)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Empty(t, w.Header().Get(HeaderReservation), "not asked: ended at once")
	assert.Equal(t, 30, cost())
	assert.Zero(t, slots())

	w = ask(40, true)
	require.Equal(t, http.StatusOK, w.Code)
	id := w.Header().Get(HeaderReservation)
	require.Len(t, id, 32)
	assert.Equal(t, 70, cost())
	assert.Equal(t, 1, slots(), "held until the settle call")
	w2 := ask(10, true)
	id2 := w2.Header().Get(HeaderReservation)
	require.Len(t, id2, 32)
	assert.Equal(t, http.StatusTooManyRequests, ask(0, true).Code, "both slots held")

	assert.Equal(t, http.StatusNotFound, settleCall("free-1", id, HeaderCost, "5").Code, "another key's")
	assert.Equal(t, http.StatusBadRequest, settleCall("k", id, HeaderCost, "-5").Code)
	assert.Equal(t, http.StatusBadRequest, settleCall("k", id, HeaderFailed, "yes").Code)
	assert.Equal(t, http.StatusBadRequest, settleCall("k", "abc").Code)
	assert.Equal(t, http.StatusUnauthorized, settleCall("", id).Code)
	assert.Equal(t, 1+1, slots(), "refused settle calls change nothing")

	require.Equal(t, http.StatusNoContent, settleCall("k", id, HeaderCost, "5").Code)
	assert.Equal(t, 45, cost(), "30 + 40 + 10, the 40 settled at 5")
	assert.Equal(t, 1, slots())
	assert.Equal(t, http.StatusNotFound, settleCall("k", id, HeaderCost, "5").Code, "settled already")

	require.Equal(t, http.StatusNoContent, settleCall("k", id2, HeaderFailed, "true").Code)
	assert.Equal(t, 35, cost(), "failed: the 10 given back")
	assert.Zero(t, slots())

	// Never settled: at MaxJobDuration it ends, the estimate standing.
	w = ask(20, true)
	id3 := w.Header().Get(HeaderReservation)
	require.Len(t, id3, 32)
	c.advance(time.Hour)
	assert.Equal(t, http.StatusNotFound, settleCall("k", id3, HeaderCost, "1").Code, "ended at its deadline")

	r := httptest.NewRequest(http.MethodGet, "/system/settle", nil)
	wm := httptest.NewRecorder()
	settle.ServeHTTP(wm, r)
	assert.Equal(t, http.StatusMethodNotAllowed, wm.Code)
}
