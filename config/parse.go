package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds on what a file may say. Counts stay far below int32 overflow, so a
// limit survives any arithmetic or wire format that uses 32 bits.
const (
	// maxWindow is the longest window_seconds accepted.
	maxWindow = 24 * time.Hour
	// maxLimit is the largest limit, burst or degraded accepted.
	maxLimit = 1_000_000_000
	// maxTierNameLen is the longest tier name accepted, in bytes.
	maxTierNameLen = 64
)

// Parse parses and validates a tiers.json document and fills its defaults.
// The document is one JSON object with window_seconds (required), tiers
// (required, at least one), cost_unit (required when a tier has a cost)
// and api_keys (optional). A tier has limit, burst and degraded, and may
// have cost (the same three and default_estimate) and concurrency (the
// same three). Unknown fields, fields given twice, wrong types and
// trailing data are errors, and every error names the offending field by
// its JSON path. Members are checked in file order, so the same bad file
// always gives the same message.
//
// Bounds: window_seconds is 1 to 86400 (24 hours); every limit, burst and
// degraded is 1 to 1e9, with degraded <= limit <= burst; default_estimate
// is 0 to the cost's burst; cost_unit is 1 to 64 letters, digits, '-', '_'
// or '.', starting with a letter; a tier name is 1 to 64 bytes; an API key
// is 1 to 256 bytes of printable ASCII without spaces, the same rule the
// HTTP layer applies to X-API-Key, so every key in the file can actually be
// sent.
func Parse(data []byte) (*Tiers, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var root json.RawMessage
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document, want a JSON object")
		}
		return nil, syntaxError(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the top-level object at byte %d", dec.InputOffset())
	}

	var windowRaw, unitRaw, tiersRaw, keysRaw json.RawMessage
	err := eachMember(root, "", func(name string, value json.RawMessage) error {
		switch name {
		case "window_seconds":
			windowRaw = value
		case "cost_unit":
			unitRaw = value
		case "tiers":
			tiersRaw = value
		case "api_keys":
			keysRaw = value
		default:
			return fmt.Errorf("%s: unknown field (want window_seconds, cost_unit, tiers or api_keys)", field("", name))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	t := &Tiers{
		tiers: make(map[string]Tier),
		keys:  make(map[string]Tier),
	}
	if windowRaw == nil {
		return nil, errors.New("window_seconds: missing")
	}
	secs, err := parseInt("window_seconds", windowRaw, int64(maxWindow/time.Second))
	if err != nil {
		return nil, err
	}
	t.Window = time.Duration(secs) * time.Second
	if unitRaw != nil {
		if t.CostUnit, err = parseUnit("cost_unit", unitRaw); err != nil {
			return nil, err
		}
	}

	if tiersRaw == nil {
		return nil, errors.New("tiers: missing")
	}
	if err := eachMember(tiersRaw, "tiers", func(name string, value json.RawMessage) error {
		tier, err := parseTier(name, value)
		if err != nil {
			return err
		}
		t.tiers[name] = tier
		return nil
	}); err != nil {
		return nil, err
	}
	if len(t.tiers) == 0 {
		return nil, errors.New("tiers: empty, want at least one tier")
	}
	for name := range t.tiers {
		t.names = append(t.names, name)
	}
	slices.Sort(t.names)
	for _, name := range t.names {
		if t.tiers[name].Cost.Set() && t.CostUnit == "" {
			return nil, fmt.Errorf("cost_unit: missing; %s needs it, to say what a cost counts", field(field("tiers", name), "cost"))
		}
	}

	if keysRaw != nil {
		if err := eachMember(keysRaw, "api_keys", func(key string, value json.RawMessage) error {
			path := keyPath(key)
			if err := CheckKey(key); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if kind(value) != "string" {
				return fmt.Errorf("%s: got %s, want a tier name", path, kind(value))
			}
			var name string
			if err := json.Unmarshal(value, &name); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			tier, ok := t.tiers[name]
			if !ok {
				return fmt.Errorf("%s: unknown tier %q", path, name)
			}
			t.keys[key] = tier
			return nil
		}); err != nil {
			return nil, err
		}
	}

	t.hash = t.computeHash()
	return t, nil
}

// parseTier parses the object of the tier called name, fills its defaults
// and checks that 0 < degraded <= limit <= burst, in each dimension.
func parseTier(name string, value json.RawMessage) (Tier, error) {
	path := field("tiers", name)
	switch {
	case name == "":
		return Tier{}, fmt.Errorf("%s: empty tier name", path)
	case len(name) > maxTierNameLen:
		return Tier{}, fmt.Errorf("%s: tier name longer than %d bytes", path, maxTierNameLen)
	}
	tier := Tier{Name: name}
	var estimate int64
	cost := member{"cost", func(p string, v json.RawMessage) (err error) {
		tier.Cost, err = parseLimits(p, v, member{"default_estimate", func(p string, v json.RawMessage) (err error) {
			estimate, err = parseIntIn(p, v, 0, maxLimit)
			return err
		}})
		return err
	}}
	concurrency := member{"concurrency", func(p string, v json.RawMessage) (err error) {
		tier.Concurrency, err = parseLimits(p, v)
		return err
	}}
	requests, err := parseLimits(path, value, cost, concurrency)
	if err != nil {
		return Tier{}, err
	}
	if estimate > int64(tier.Cost.Burst) {
		return Tier{}, fmt.Errorf("%s.cost.default_estimate: %d is more than burst %d: no request without an estimate could ever be admitted", path, estimate, tier.Cost.Burst)
	}
	tier.Limit, tier.Burst, tier.Degraded = requests.Limit, requests.Burst, requests.Degraded
	tier.CostEstimate = int(estimate)
	return tier, nil
}

// member is a member of an object that parseLimits parses with its own
// function, given the member's path.
type member struct {
	name  string
	parse func(path string, value json.RawMessage) error
}

// parseLimits parses the object at path: limit (required), burst and
// degraded (default: limit), each 1 to maxLimit, and the members of more;
// it fills the defaults and checks that 0 < degraded <= limit <= burst.
func parseLimits(path string, value json.RawMessage, more ...member) (Limits, error) {
	var limit, burst, degraded int64
	want := []string{"limit", "burst", "degraded"}
	for _, m := range more {
		want = append(want, m.name)
	}
	err := eachMember(value, path, func(f string, v json.RawMessage) error {
		var dst *int64
		switch f {
		case "limit":
			dst = &limit
		case "burst":
			dst = &burst
		case "degraded":
			dst = &degraded
		default:
			for _, m := range more {
				if m.name == f {
					return m.parse(field(path, f), v)
				}
			}
			return fmt.Errorf("%s: unknown field (want %s or %s)", field(path, f), strings.Join(want[:len(want)-1], ", "), want[len(want)-1])
		}
		n, err := parseInt(field(path, f), v, maxLimit)
		if err != nil {
			return err
		}
		*dst = n
		return nil
	})
	if err != nil {
		return Limits{}, err
	}
	// parseInt refuses zero, so zero here means "not given".
	if limit == 0 {
		return Limits{}, fmt.Errorf("%s.limit: missing", path)
	}
	if burst == 0 {
		burst = limit
	}
	if degraded == 0 {
		degraded = limit
	}
	if burst < limit {
		return Limits{}, fmt.Errorf("%s.burst: %d is less than limit %d", path, burst, limit)
	}
	if degraded > limit {
		return Limits{}, fmt.Errorf("%s.degraded: %d is more than limit %d", path, degraded, limit)
	}
	return Limits{Limit: int(limit), Burst: int(burst), Degraded: int(degraded)}, nil
}

// maxUnitLen is the longest cost_unit accepted, in bytes.
const maxUnitLen = 64

// parseUnit parses value, the JSON at path, as a unit's name: 1 to 64
// letters, digits, '-', '_' or '.', starting with a letter, so that it
// goes into a header (RateLimit-Policy's qu) as it is.
func parseUnit(path string, value json.RawMessage) (string, error) {
	if k := kind(value); k != "string" {
		return "", fmt.Errorf("%s: got %s, want a unit's name such as \"audio-seconds\"", path, k)
	}
	var unit string
	if err := json.Unmarshal(value, &unit); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case unit == "":
		return "", fmt.Errorf("%s: empty", path)
	case len(unit) > maxUnitLen:
		return "", fmt.Errorf("%s: longer than %d bytes", path, maxUnitLen)
	case !isLetter(rune(unit[0])):
		return "", fmt.Errorf("%s: %q does not start with a letter", path, shorten(unit))
	}
	for _, c := range unit {
		if !isLetter(c) && !('0' <= c && c <= '9') && c != '-' && c != '_' && c != '.' {
			return "", fmt.Errorf("%s: %q holds %q; want letters, digits, '-', '_' or '.'", path, shorten(unit), c)
		}
	}
	return unit, nil
}

// isLetter reports whether c is an ASCII letter.
func isLetter(c rune) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// parseInt parses value, the JSON at path, as an integer in [1, max].
func parseInt(path string, value json.RawMessage, max int64) (int64, error) {
	return parseIntIn(path, value, 1, max)
}

// parseIntIn parses value, the JSON at path, as an integer in [min, max];
// min is 0 or 1.
func parseIntIn(path string, value json.RawMessage, min, max int64) (int64, error) {
	want, below := "a positive integer", "is not positive"
	if min == 0 {
		want, below = "an integer, 0 or more", "is negative"
	}
	if k := kind(value); k != "number" {
		return 0, fmt.Errorf("%s: got %s, want %s", path, k, want)
	}
	value = bytes.TrimSpace(value)
	n, err := strconv.ParseInt(string(value), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && value[0] == '-':
		return 0, fmt.Errorf("%s: %s %s", path, value, below)
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%s: %s is more than the maximum %d", path, value, max)
	case err != nil:
		return 0, fmt.Errorf("%s: %s is not an integer", path, value)
	case n < min:
		return 0, fmt.Errorf("%s: %d %s", path, n, below)
	case n > max:
		return 0, fmt.Errorf("%s: %d is more than the maximum %d", path, n, max)
	}
	return n, nil
}

// eachMember calls fn with the name and raw value of each member of the JSON
// object obj, in file order. path names obj in errors; "" is the top level.
// obj must be valid JSON; eachMember refuses anything but an object, and a
// member name given twice.
func eachMember(obj json.RawMessage, path string, fn func(name string, value json.RawMessage) error) error {
	where := path
	if where == "" {
		where = "top level"
	}
	if k := kind(obj); k != "object" {
		return fmt.Errorf("%s: got %s, want an object", where, k)
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // the opening brace
		return fmt.Errorf("%s: %w", where, err)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%s: member name is %v, want a string", where, tok)
		}
		if seen[name] {
			return fmt.Errorf("%s: given twice", memberPath(path, name))
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return fmt.Errorf("%s: %w", memberPath(path, name), err)
		}
		if err := fn(name, value); err != nil {
			return err
		}
	}
	return nil
}

// memberPath is the path of member name of the object at path: API keys in
// brackets, everything else as fields.
func memberPath(path, name string) string {
	if path == "api_keys" {
		return keyPath(name)
	}
	return field(path, name)
}

// field returns the JSON path of member name of the object at path:
// path.name for names made of letters, digits, '_' and '-', path["name"]
// for the rest.
func field(path, name string) string {
	plain := name != ""
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(shorten(name)) + "]"
	case path == "":
		return name
	default:
		return path + "." + name
	}
}

// keyPath returns the JSON path of an API key, always in brackets since a
// key is data rather than a name: api_keys["free-demo-1"].
func keyPath(key string) string {
	return "api_keys[" + strconv.Quote(shorten(key)) + "]"
}

// shorten cuts s for an error message, so a 10 kB key does not make a
// 10 kB message.
func shorten(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// kind returns the JSON type of the valid JSON value v, as a message would
// say it: "object", "array", "string", "number", "boolean" or "null".
func kind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// syntaxError turns a decoding error of the whole document into one that
// says where, as line:column.
func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	// Offset counts the bytes read, the bad one included.
	pos := min(max(int(se.Offset)-1, 0), len(data))
	line := 1 + bytes.Count(data[:pos], []byte("\n"))
	col := pos - bytes.LastIndexByte(data[:pos], '\n')
	return fmt.Errorf("invalid JSON at line %d, column %d: %w", line, col, err)
}
