package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/health"
)

// FuzzHealthBody feeds arbitrary bodies to POST /system/health. Whatever
// the input, the node must answer 200 with a valid state or 400 with a
// reason, and change the state only on a 200.
func FuzzHealthBody(f *testing.F) {
	for _, seed := range []string{
		`{"status":"NORMAL"}`, `{"status":"DEGRADED"}`, ` {"status" : "DEGRADED"} `, `{}`, ``, `null`,
		`{"status":null}`, `{"status":"degraded"}`, `{"status":1}`, `["DEGRADED"]`, `{"status":"NORMAL"}x`,
		`{"status":"NORMAL","x":1}`, `{"status":"\u0044EGRADED"}`, `{"status":"NORMAL"`, "\xff\xfe",
		`{"status":"` + strings.Repeat("A", 5000) + `"}`, `{"Status":"DEGRADED"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fx := newFixture(t)
		r := httptest.NewRequest(http.MethodPost, "/system/health", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+adminToken)
		w := httptest.NewRecorder()
		fx.handler.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			st := fx.health.Status()
			assert.True(t, st == health.Normal || st == health.Degraded)
		case http.StatusBadRequest:
			e := decodeError(t, w)
			assert.Equal(t, "bad_request", e.Code)
			assert.NotEmpty(t, e.Message)
			assert.Equal(t, uint64(0), fx.health.Current().Version, "a refused body changed the state")
		default:
			require.Failf(t, "unexpected status", "POST /system/health %q = %d %s", body, w.Code, w.Body)
		}
	})
}

// FuzzAPIKey feeds arbitrary X-API-Key values to the middleware: each gets
// 200/429 with headers or 401, never a panic, and unknown keys are never
// counted.
func FuzzAPIKey(f *testing.F) {
	for _, seed := range []string{"free-1", "", " ", "free-1 ", strings.Repeat("k", 300), "\x00", "pro-1\n", "ключ"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		fx := newFixture(t)
		r := httptest.NewRequest(http.MethodGet, "/test", nil)
		r.Header["X-Api-Key"] = []string{key}
		w := httptest.NewRecorder()
		fx.handler.ServeHTTP(w, r)
		_, known := keys[key]
		if known {
			assert.Equal(t, http.StatusOK, w.Code)
			return
		}
		assert.Equal(t, http.StatusUnauthorized, w.Code)
		assert.Equal(t, 0, fx.store.Len())
	})
}
