package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/health"
)

// MaxAdminBody is the largest admin request body read, in bytes.
const MaxAdminBody = 4 << 10

// HealthResponse is the body of GET and POST /system/health.
type HealthResponse struct {
	Status health.Status `json:"status"`
	// Version orders the writes: a hybrid logical clock stamp (see
	// health.State), in JSON a decimal string, since it does not fit in
	// the 53 bits a JSON number keeps exactly in most decoders.
	Version   uint64    `json:"version,string"`
	Origin    string    `json:"origin"`
	UpdatedAt time.Time `json:"updated_at"`
	// Node is the node that answered.
	Node string `json:"node"`
	// Changed reports, on POST, whether the request changed the state.
	Changed *bool `json:"changed,omitempty"`
	// Load is this node's load signal, when it has one.
	Load *Load `json:"load,omitempty"`
}

// Load is how saturated the work behind a node is: the requests in flight
// through its middleware (admitted, their handler not returned) against
// the jobs its instance runs at once. Signal is InFlight / Capacity: 1.0
// is full, above it the work queues.
type Load struct {
	InFlight int64   `json:"in_flight"`
	Capacity int     `json:"capacity"`
	Signal   float64 `json:"signal"`
}

// Member is one node as GET /system/cluster shows it.
type Member struct {
	Name       string `json:"name"`
	Addr       string `json:"gossip_addr,omitempty"`
	GRPCAddr   string `json:"grpc_addr,omitempty"`
	State      string `json:"state"`
	ConfigHash string `json:"config_hash,omitempty"`
	// Leaving is set while the member is handing off before it leaves: it
	// still answers but gets no new keys.
	Leaving bool `json:"leaving,omitempty"`
	Self    bool `json:"self"`
}

// ClusterResponse is the body of GET /system/cluster.
type ClusterResponse struct {
	Node    string   `json:"node"`
	Members []Member `json:"members"`
}

// AdminConfig configures the admin handler. Health is required.
type AdminConfig struct {
	// Token is the bearer token every admin request must carry. Empty
	// turns the endpoints off: every request gets 401.
	Token string
	// Health is the state GET shows and POST sets.
	Health *health.Holder
	// Set, if not nil, makes a POSTed status the state in force instead of
	// Health.Set, and says if it could not keep it (the POST then gets 500
	// with the reason). It returns the state in force and whether the
	// status changed.
	Set func(status health.Status, now time.Time) (health.State, bool, error)
	// Node names this node in responses.
	Node string
	// Members lists the cluster for GET …/cluster. Nil shows this node
	// alone.
	Members func() []Member
	// Load, if not nil, tells GET and POST …/health this node's load
	// signal; ok false leaves it out (the node has none).
	Load func() (Load, bool)
	// Now is the clock that stamps a POSTed state. Default time.Now.
	Now func() time.Time
	// Logger receives a line for every state an operator sets. Nil
	// discards.
	Logger *slog.Logger
}

// NewAdmin returns the handler of the admin endpoints, which routes on the
// last element of the path so that it can be mounted under any prefix
// (mounted at "/system/", it serves /system/health):
//
//	GET  …/health   the current health state
//	POST …/health   set NORMAL or DEGRADED: {"status":"DEGRADED"}
//	GET  …/cluster  the members and which one answered
//
// Every request must carry "Authorization: Bearer <Token>"; without it, or
// with a wrong one, it gets 401. It panics if Health is nil.
func NewAdmin(cfg AdminConfig) http.Handler {
	if cfg.Health == nil {
		panic("api: AdminConfig needs Health")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Set == nil {
		cfg.Set = func(status health.Status, now time.Time) (health.State, bool, error) {
			s, changed := cfg.Health.Set(status, now)
			return s, changed, nil
		}
	}
	a := &admin{
		load:     cfg.Load,
		set:      cfg.Set,
		tokenSum: sha256.Sum256([]byte(cfg.Token)),
		enabled:  cfg.Token != "",
		health:   cfg.Health,
		node:     cfg.Node,
		members:  cfg.Members,
		now:      cfg.Now,
		log:      cfg.Logger,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tierlimit-admin"`)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong admin bearer token")
			return
		}
		switch path := r.URL.Path; {
		case strings.HasSuffix(path, "/health"):
			a.serveHealth(w, r)
		case strings.HasSuffix(path, "/cluster"):
			a.serveCluster(w, r)
		default:
			WriteError(w, http.StatusNotFound, "not_found", "no such admin endpoint: "+path+"; want …/health or …/cluster")
		}
	})
}

// admin holds what the admin endpoints need.
type admin struct {
	set      func(health.Status, time.Time) (health.State, bool, error)
	tokenSum [sha256.Size]byte
	enabled  bool // a token was configured
	health   *health.Holder
	node     string
	members  func() []Member
	load     func() (Load, bool)
	now      func() time.Time
	log      *slog.Logger
}

// authorized reports whether r carries the admin bearer token. Both sides
// are hashed first so the comparison takes the same time whatever the
// length or content of the guess.
func (a *admin) authorized(r *http.Request) bool {
	if !a.enabled {
		return false
	}
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || len(h) > 1024 {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

func (a *admin) serveHealth(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		WriteJSON(w, http.StatusOK, a.healthResponse(a.health.Current(), nil))
	case http.MethodPost:
		status, err := decodeHealthBody(http.MaxBytesReader(w, r.Body, MaxAdminBody))
		if err != nil {
			WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		// Every POST is a new write, the same status too: it must win over
		// any earlier write, also one this node has not heard of yet.
		s, changed, err := a.set(status, a.now())
		a.log.Info("health state set by admin", "status", s.Status.String(), "version", s.Version,
			"changed", changed, "remote", r.RemoteAddr)
		if err != nil {
			WriteError(w, http.StatusInternalServerError, "not_saved",
				"the state is in force but could not be saved, so it may not survive a restart: "+err.Error())
			return
		}
		WriteJSON(w, http.StatusOK, a.healthResponse(s, &changed))
	default:
		MethodNotAllowed(w, "GET, HEAD, POST")
	}
}

func (a *admin) healthResponse(s health.State, changed *bool) HealthResponse {
	r := HealthResponse{Status: s.Status, Version: s.Version, Origin: s.Origin, UpdatedAt: s.UpdatedAt, Node: a.node, Changed: changed}
	if a.load != nil {
		if l, ok := a.load(); ok {
			r.Load = &l
		}
	}
	return r
}

func (a *admin) serveCluster(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		MethodNotAllowed(w, "GET, HEAD")
		return
	}
	var ms []Member
	if a.members != nil {
		ms = a.members()
	} else {
		ms = []Member{{Name: a.node, State: "alive", Self: true}}
	}
	WriteJSON(w, http.StatusOK, ClusterResponse{Node: a.node, Members: ms})
}

// decodeHealthBody parses exactly {"status":"NORMAL"} or
// {"status":"DEGRADED"}, and says precisely what is wrong otherwise.
func decodeHealthBody(r io.Reader) (health.Status, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return 0, fmt.Errorf("body is larger than %d bytes", tooBig.Limit)
		}
		return 0, fmt.Errorf("read body: %w", err)
	}
	return parseHealthBody(data)
}

func parseHealthBody(data []byte) (health.Status, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return 0, errors.New(`empty body; want {"status":"NORMAL"} or {"status":"DEGRADED"}`)
	}
	var body struct {
		Status *string `json:"status"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return 0, fmt.Errorf("field %q must be a string", typeErr.Field)
		}
		return 0, fmt.Errorf("body is not a JSON object with a status: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return 0, errors.New("unexpected data after the JSON object")
	}
	if body.Status == nil {
		return 0, errors.New(`missing field "status"`)
	}
	s, err := health.ParseStatus(*body.Status)
	if err != nil {
		return 0, fmt.Errorf("field \"status\": %w", err)
	}
	return s, nil
}

// MethodNotAllowed writes 405 with the Allow header set to allow (such as
// "GET, HEAD") and the JSON error body, code "method_not_allowed".
func MethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed; use "+allow)
}
