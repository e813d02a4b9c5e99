package ownership

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ring"
)

// TestImportsHoldAKeyToItsShareUntilItsCountArrives steps a node that joins
// a 2-member ring: the keys it takes over from b are held to the share
// ceil(L / 3) until b's hand-off lands or ImportFor passes; keys it owned
// before, and keys of a member that left (counted from copies), are not.
func TestImportsHoldAKeyToItsShareUntilItsCountArrives(t *testing.T) {
	cur := []string{"a", "b", "c"}
	after := ring.New()
	after.Set(cur)
	fromB, fromC := "", ""
	before := ring.New()
	before.Set([]string{"b", "c"})
	for i := 0; fromB == "" || fromC == ""; i++ {
		k := "user-" + strconv.Itoa(i)
		if must(after.Owner(k)) != "a" {
			continue
		}
		switch must(before.Owner(k)) {
		case "b":
			fromB = k
		case "c":
			fromC = k
		}
	}
	t0 := routerT0
	im := NewImports("a")
	assert.Equal(t, 20, im.Limit(t0, fromB, 20), "nothing moved yet")
	assert.False(t, im.Importing(t0), "nothing moved yet")

	im.Moved([]string{"a"}, cur, t0) // a was alone: it has just joined b and c
	steps := []struct {
		name    string
		at      time.Duration
		arrived string
		key     string
		want    int
		held    bool // Importing
	}{
		{"from b, nothing arrived", 0, "", fromB, 7, true},
		{"from c, nothing arrived", 0, "", fromC, 7, true},
		{"b's hand-off lands", time.Millisecond, "b", fromB, 20, true},
		{"c's has not", time.Millisecond, "", fromC, 7, true},
		{"ImportFor has passed", ImportFor, "", fromC, 20, false},
	}
	for _, st := range steps {
		if st.arrived != "" {
			im.Arrived(st.arrived, t0.Add(st.at))
		}
		assert.Equal(t, st.want, im.Limit(t0.Add(st.at), st.key, 20), st.name)
		assert.Equal(t, st.held, im.Importing(t0.Add(st.at)), st.name)
	}
	im.Moved([]string{"a"}, cur, t0.Add(time.Minute))
	im.Arrived("b", t0.Add(time.Minute))
	assert.True(t, im.Importing(t0.Add(time.Minute)), "c's hand-off has not landed")
	im.Arrived("c", t0.Add(time.Minute))
	assert.False(t, im.Importing(t0.Add(time.Minute)), "both hand-offs landed")

	// c leaves a ring of a, b, c: its keys come from copies, so none is
	// held; a's own keys never are.
	im.Moved(cur, []string{"a", "b"}, t0.Add(time.Hour))
	assert.Equal(t, 20, im.Limit(t0.Add(time.Hour), fromC, 20), "a leaver's key")
	mine := keyOwnedBy(t, after, "a")
	im.Moved(cur, cur, t0.Add(2*time.Hour))
	assert.Equal(t, 20, im.Limit(t0.Add(2*time.Hour), mine, 20), "a key this node owned before")

	// A hand-off that lands just before this node sees the change (the
	// sender saw it first) counts for it.
	im.Arrived("b", t0.Add(3*time.Hour-time.Millisecond))
	im.Moved([]string{"a"}, cur, t0.Add(3*time.Hour))
	assert.Equal(t, 20, im.Limit(t0.Add(3*time.Hour), fromB, 20), "b's hand-off came first")
	assert.Equal(t, 7, im.Limit(t0.Add(3*time.Hour), fromC, 20), "c's has not come")

	var none *Imports
	assert.Equal(t, 20, none.Limit(t0, fromB, 20), "no Imports: the limit")
	assert.False(t, none.Importing(t0), "no Imports")
}

// TestOwnerHoldsAnImportedKeyToItsShare: checks forwarded to a new owner
// for a key it is importing are decided against the share until the
// previous owner's count arrives; the decision says so in its Limit.
func TestOwnerHoldsAnImportedKeyToItsShare(t *testing.T) {
	store := bucket.New(bucket.Config{Window: routerWindow})
	o := NewOwner(store, func() int { return 3 }, time.Second)
	im := NewImports("a")
	o.SetImports(im)
	rg := ring.New()
	rg.Set([]string{"a", "b", "c"})
	key := keyOwnedBy(t, rg, "a")
	im.Moved([]string{"a"}, []string{"a", "b", "c"}, routerT0)
	admitted := 0
	var last forward.Result
	for range 20 {
		if last = o.Decide(routerT0, forward.Item{Key: key, Hits: 1, Limit: 20, Window: routerWindow}); last.Allowed {
			admitted++
		}
	}
	assert.Equal(t, 7, admitted, "ceil(20 / 3) before the moved count arrives")
	assert.Equal(t, 7, last.Limit)
	for _, m := range []string{"b", "c"} {
		im.Arrived(m, routerT0)
	}
	assert.True(t, o.Decide(routerT0, forward.Item{Key: key, Hits: 1, Limit: 20, Window: routerWindow}).Allowed, "the count arrived: the whole limit")
}

// must returns owner, ignoring ok.
func must(owner string, _ bool) string { return owner }
