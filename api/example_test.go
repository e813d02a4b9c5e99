package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

func Example() {
	tiers, err := config.Parse([]byte(`{"window_seconds":60,
		"tiers":{"free":{"limit":10,"burst":20,"degraded":2}},
		"api_keys":{"my-key":"free"}}`))
	if err != nil {
		panic(err)
	}
	state := health.NewHolder("node-1")
	lim := api.NewLimiter(api.Config{
		Keys:    tiers,
		Checker: api.Local{Store: bucket.New(bucket.Config{Window: tiers.Window})},
		Health:  state,
		Window:  tiers.Window,
	})
	inference := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "transcript...")
	})
	h := lim.Middleware(inference) // works with any router

	call := func() {
		r := httptest.NewRequest(http.MethodGet, "/v1/transcribe", nil)
		r.Header.Set("X-API-Key", "my-key")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get(api.HeaderLimit), w.Header().Get(api.HeaderRemaining))
	}
	call()
	state.Set(health.Degraded, time.Now())
	call()
	call()
	// Output:
	// 200 20 19
	// 200 2 0
	// 429 2 0
}
