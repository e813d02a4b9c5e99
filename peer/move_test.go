package peer

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/handoff"
	"github.com/tierlimit/tierlimit/peerpb"
)

var _ handoff.Mover = (*Client)(nil)

// receiver is a fake Receiver that keeps every call.
type receiver struct {
	// mu guards the fields below.
	mu             sync.Mutex
	handed, copied map[string][]bucket.Count
}

func (r *receiver) Handed(from string, cs []bucket.Count) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handed[from] = append(r.handed[from], cs...)
}

func (r *receiver) Copies(from, boot string, cs []bucket.Count) error {
	if from == "stranger" {
		return handoff.ErrNotMember
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.copied[from+"/"+boot] = append(r.copied[from+"/"+boot], cs...)
	return nil
}

// serveReceiver serves a Server with rcv over bufconn and returns a Client.
func serveReceiver(t *testing.T, rcv Receiver) *Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	srv := newServer(&scriptedStore{window: peerWindow}, nil)
	srv.receiver = rcv
	srv.Register(g)
	serveUntilCleanup(t, g, lis)
	c, err := newClient("passthrough:///bufconn", insecure.NewCredentials(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestHandoffAndBackupCarryEveryField(t *testing.T) {
	rcv := &receiver{handed: map[string][]bucket.Count{}, copied: map[string][]bucket.Count{}}
	c := serveReceiver(t, rcv)
	counts := []bucket.Count{
		{Key: "k1", Start: time.Unix(1_700_000_000, 123), Previous: 4, Current: 9},
		{Key: "k2", Start: time.Unix(1_700_000_001, 0), Current: 1},
	}
	require.NoError(t, c.Handoff(t.Context(), "node-a", peerWindow, counts))
	require.NoError(t, c.Backup(t.Context(), "node-b", "boot-b", peerWindow, counts[:1]))
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	require.Len(t, rcv.handed["node-a"], 2)
	for i, got := range rcv.handed["node-a"] {
		assert.True(t, counts[i].Start.Equal(got.Start), "count %d: Start %v, want %v", i, got.Start, counts[i].Start)
		got.Start = counts[i].Start
		assert.Equal(t, counts[i], got)
	}
	assert.Len(t, rcv.copied["node-b/boot-b"], 1, "with its boot id")

	err := c.Backup(t.Context(), "stranger", "boot-s", peerWindow, counts)
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "copies the receiver refuses: %v", err)
	assert.Empty(t, rcv.copied["stranger/boot-s"])
}

func TestMovesAreChecked(t *testing.T) {
	rcv := &receiver{handed: map[string][]bucket.Count{}, copied: map[string][]bucket.Count{}}
	c := serveReceiver(t, rcv)
	good := bucket.Count{Key: "k", Start: time.Unix(1_700_000_000, 0), Current: 1}
	tests := []struct {
		name   string
		from   string
		window time.Duration
		counts []bucket.Count
		want   string
	}{
		{"no sender", "", peerWindow, []bucket.Count{good}, "from is 0 bytes"},
		{"other window", "a", time.Second, []bucket.Count{good}, "window is 1s"},
		{"bad key", "a", peerWindow, []bucket.Count{good, {Key: "a\tb"}}, "count 1: API key has byte 0x9"},
		{"unknown counter", "a", peerWindow, []bucket.Count{good, {Key: "a b"}}, "count 1: counter key has an unknown suffix"},
		{"too many", "a", peerWindow, make([]bucket.Count, forward.MaxCheckItems+1), "10001 counts"},
	}
	for _, tt := range tests {
		err := c.Handoff(t.Context(), tt.from, tt.window, tt.counts)
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "%s: %v", tt.name, err)
		assert.True(t, strings.Contains(err.Error(), tt.want), "%s: %v, want %q", tt.name, err, tt.want)
	}
	rcv.mu.Lock()
	assert.Empty(t, rcv.handed, "a refused batch is not taken")
	rcv.mu.Unlock()

	without := serveReceiver(t, nil)
	err := without.Backup(t.Context(), "a", "boot-a", peerWindow, []bucket.Count{good})
	assert.Equal(t, codes.Unimplemented, status.Code(err))
}

// TestHandoffPastItsDeadlineIsNotTaken: a hand-off that reaches the
// receiver after its sender's deadline (the receiver was paused, and wakes
// to a queue of calls) is refused, not applied: the sender took the error
// and will send the counts again, so applying this one too would count
// them twice.
func TestHandoffPastItsDeadlineIsNotTaken(t *testing.T) {
	rcv := &receiver{handed: map[string][]bucket.Count{}, copied: map[string][]bucket.Count{}}
	srv := newServer(&scriptedStore{window: peerWindow}, nil)
	srv.receiver = rcv
	req := &peerpb.Counts{From: "node-a", WindowNanos: int64(peerWindow),
		Counts: []*peerpb.Count{{Key: "k", StartUnixNanos: 1_700_000_000_000_000_000, Current: 1}}}
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Millisecond))
	defer cancel()
	_, err := srv.Handoff(ctx, req)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	_, err = srv.Backup(ctx, req)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Empty(t, rcv.handed, "nothing handed")
	assert.Empty(t, rcv.copied, "nothing copied")
}
