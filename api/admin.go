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
	"github.com/tierlimit/tierlimit/loadctl"
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
	// Mode is "auto" when the cluster's load switches the state, "manual"
	// when a person's write pins it, "off" when no member has a load
	// signal.
	Mode string `json:"mode"`
	// Why says what made the write in force.
	Why string `json:"why,omitempty"`
	// Cluster is the cluster's load as this node sees it, when a member
	// has a load signal.
	Cluster *ClusterLoad `json:"cluster_load,omitempty"`
}

// LoadReportResponse is POST /system/load's answer: the health state in
// force, so that the app's middleware learns of a switch with its next
// report (the Python middleware's queue sheds its free requests on it).
type LoadReportResponse struct {
	Status  health.Status `json:"status"`
	Version uint64        `json:"version,string"`
}

// The modes of HealthResponse.Mode.
const (
	ModeAuto   = "auto"
	ModeManual = "manual"
	ModeOff    = "off"
)

// ClusterLoad is the cluster's load as one node sees it, and the settings
// of the automatic switch.
type ClusterLoad struct {
	// Saturation and Demand are the means over the members whose sample is
	// fresh of their load signal and of their demand (the signal plus the
	// work DEGRADED refuses and NORMAL would let in).
	Saturation float64 `json:"saturation"`
	Demand     float64 `json:"demand"`
	// Known and Unknown count the members whose sample is fresh and stale.
	Known   int `json:"known"`
	Unknown int `json:"unknown"`
	// Writer is the member that writes the switch.
	Writer string `json:"writer"`
	// High, Low, UpHold and DownHold are this node's settings.
	High     float64 `json:"high"`
	Low      float64 `json:"low"`
	UpHold   string  `json:"up_hold"`
	DownHold string  `json:"down_hold"`
	// Members are the samples, by name.
	Members []MemberLoad `json:"members"`
}

// MemberLoad is one member's last load sample.
type MemberLoad struct {
	Name   string  `json:"name"`
	Signal float64 `json:"signal"`
	Demand float64 `json:"demand"`
	// AgeMS is how old the sample is, in milliseconds; Fresh whether it
	// counts (a stale one is unknown, not idle).
	AgeMS int64 `json:"age_ms"`
	Fresh bool  `json:"fresh"`
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
	// Set, if not nil, makes a POSTed write the state in force instead of
	// Health.Write, and says if it could not keep it (the POST then gets
	// 500 with the reason). It returns the state in force and whether the
	// status changed.
	Set func(w health.Write, now time.Time) (health.State, bool, error)
	// Node names this node in responses.
	Node string
	// Members lists the cluster for GET …/cluster. Nil shows this node
	// alone.
	Members func() []Member
	// Load, if not nil, tells GET and POST …/health this node's load
	// signal; ok false leaves it out (the node has none).
	Load func() (Load, bool)
	// ClusterLoad, if not nil, tells …/health the cluster's load; nil
	// from it means no member has a load signal.
	ClusterLoad func() *ClusterLoad
	// Report, if not nil, takes a load signal POSTed to …/load by the app
	// behind the node.
	Report func(signal float64, now time.Time)
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
		cfg.Set = func(w health.Write, now time.Time) (health.State, bool, error) {
			s, changed := cfg.Health.Write(w, now)
			return s, changed, nil
		}
	}
	a := &admin{
		load:     cfg.Load,
		cluster:  cfg.ClusterLoad,
		report:   cfg.Report,
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
		case strings.HasSuffix(path, "/load") && a.report != nil:
			a.serveLoad(w, r)
		default:
			WriteError(w, http.StatusNotFound, "not_found", "no such admin endpoint: "+path+"; want …/health, …/cluster or …/load")
		}
	})
}

// admin holds what the admin endpoints need.
type admin struct {
	set      func(health.Write, time.Time) (health.State, bool, error)
	tokenSum [sha256.Size]byte
	enabled  bool // a token was configured
	health   *health.Holder
	node     string
	members  func() []Member
	load     func() (Load, bool)
	cluster  func() *ClusterLoad
	report   func(float64, time.Time)
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
		body, err := readBody(http.MaxBytesReader(w, r.Body, MaxAdminBody))
		var hw health.Write
		if err == nil {
			hw, err = parseHealthBody(body, a.health.Status())
		}
		if err != nil {
			WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		// Every POST is a new write, the same status too: it must win over
		// any earlier write, also one this node has not heard of yet.
		s, changed, err := a.set(hw, a.now())
		a.log.Info("health state set by admin", "status", s.Status.String(), "pinned", s.Pinned, "version", s.Version,
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
	r := HealthResponse{Status: s.Status, Version: s.Version, Origin: s.Origin, UpdatedAt: s.UpdatedAt, Node: a.node,
		Changed: changed, Why: s.Why, Mode: ModeOff}
	if a.load != nil {
		if l, ok := a.load(); ok {
			r.Load = &l
		}
	}
	if a.cluster != nil {
		r.Cluster = a.cluster()
	}
	switch {
	case s.Manual():
		r.Mode = ModeManual
	case r.Cluster != nil:
		r.Mode = ModeAuto
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

// readBody reads an admin body, and says so when it is too large.
func readBody(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("body is larger than %d bytes", tooBig.Limit)
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty body")
	}
	return data, nil
}

// decodeStrict decodes data, one JSON object with only the fields of v,
// into v, and says precisely what is wrong otherwise.
func decodeStrict(data []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return fmt.Errorf("field %q must be a %s", typeErr.Field, typeErr.Type.Kind())
		}
		return fmt.Errorf("body is not a JSON object %s: %w", what, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// healthBodies names what POST …/health takes.
const healthBodies = `{"status":"NORMAL"}, {"status":"DEGRADED"} or {"mode":"auto"}`

// parseHealthBody parses a POST of …/health into the write it asks for,
// cur being the status in force: {"status": S} pins S (manual mode);
// {"mode":"auto"} hands the state back to the automatic switch, keeping
// cur; {"mode":"manual"} pins cur; {"status": S, "mode": M} writes S in
// mode M.
func parseHealthBody(data []byte, cur health.Status) (health.Write, error) {
	var body struct {
		Status *string `json:"status"`
		Mode   *string `json:"mode"`
	}
	if err := decodeStrict(data, &body, "with a status or a mode; want "+healthBodies); err != nil {
		return health.Write{}, err
	}
	if body.Status == nil && body.Mode == nil {
		return health.Write{}, errors.New(`missing field "status" or "mode"; want ` + healthBodies)
	}
	w := health.Write{Status: cur, Pinned: true, Why: "admin"}
	if body.Status != nil {
		s, err := health.ParseStatus(*body.Status)
		if err != nil {
			return health.Write{}, fmt.Errorf("field \"status\": %w", err)
		}
		w.Status = s
	}
	if body.Mode != nil {
		switch *body.Mode {
		case ModeAuto:
			w.Pinned, w.Why = false, "admin: handed to the automatic switch"
		case ModeManual:
		default:
			return health.Write{}, fmt.Errorf(`field "mode": must be "auto" or "manual", not %q`, *body.Mode)
		}
	}
	return w, nil
}

// LoadReport is the body of POST …/load: the app behind a node reports
// its own load, either Signal (1.0 full) or InFlight over Capacity.
type LoadReport struct {
	Signal   *float64 `json:"signal,omitempty"`
	InFlight *int64   `json:"in_flight,omitempty"`
	Capacity *int64   `json:"capacity,omitempty"`
}

// loadReportBodies names what POST …/load takes.
const loadReportBodies = `{"signal": 0.8} or {"in_flight": 3, "capacity": 4}`

// parseLoadReport returns the signal a POST of …/load reports.
func parseLoadReport(data []byte) (float64, error) {
	var rep LoadReport
	if err := decodeStrict(data, &rep, "with a load report; want "+loadReportBodies); err != nil {
		return 0, err
	}
	var v float64
	switch {
	case rep.Signal != nil && rep.InFlight == nil && rep.Capacity == nil:
		v = *rep.Signal
	case rep.Signal == nil && rep.InFlight != nil && rep.Capacity != nil:
		if *rep.InFlight < 0 {
			return 0, fmt.Errorf(`field "in_flight": %d is negative`, *rep.InFlight)
		}
		if *rep.Capacity <= 0 {
			return 0, fmt.Errorf(`field "capacity": %d is not above 0`, *rep.Capacity)
		}
		v = min(float64(*rep.InFlight)/float64(*rep.Capacity), loadctl.MaxSignal)
	default:
		return 0, errors.New("want " + loadReportBodies)
	}
	if err := loadctl.CheckSignal(v); err != nil {
		return 0, fmt.Errorf(`field "signal": %w`, err)
	}
	return v, nil
}

func (a *admin) serveLoad(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		MethodNotAllowed(w, "POST")
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, MaxAdminBody))
	var v float64
	if err == nil {
		v, err = parseLoadReport(body)
	}
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	a.report(v, a.now())
	s := a.health.Current()
	WriteJSON(w, http.StatusOK, LoadReportResponse{Status: s.Status, Version: s.Version})
}

// MethodNotAllowed writes 405 with the Allow header set to allow (such as
// "GET, HEAD") and the JSON error body, code "method_not_allowed".
func MethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed; use "+allow)
}
