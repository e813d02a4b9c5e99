package peer

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/peerpb"
)

// decider is what a Server needs of the owner side; *ownership.Owner has
// it. Tests put a fake behind it to see every field cross the wire.
type decider interface {
	Decide(now time.Time, it forward.Item) forward.Result
	Window() time.Duration
}

// Server answers other nodes' checks against this node's store: it is the
// owner side of a forward. It serves both the unary Check and CheckStream,
// the stream a Client keeps open. It is safe for concurrent use, as the
// store is.
//
// An open CheckStream is a call in progress, so grpc.Server.GracefulStop
// would wait for it until the client goes away: call Drain first.
type Server struct {
	peerpb.UnimplementedPeerServer

	store    decider
	receiver Receiver // nil: Handoff and Backup are unimplemented
	now      func() time.Time

	draining context.Context // done once Drain is called
	drain    context.CancelFunc
}

var _ peerpb.PeerServer = (*Server)(nil)

// NewServer returns a Server that decides with owner at the time now
// returns; a nil now means time.Now. It panics if owner is nil.
func NewServer(owner *ownership.Owner, now func() time.Time) *Server {
	if owner == nil {
		panic("peer: NewServer needs an owner")
	}
	return newServer(owner, now)
}

func newServer(store decider, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	draining, drain := context.WithCancel(context.Background())
	return &Server{store: store, now: now, draining: draining, drain: drain}
}

// Receiver takes the counts peers move to this node: handoff's Keeper is
// one. The Server calls it from gRPC's goroutines, with counts it has
// checked, and the slice is the Receiver's to keep.
type Receiver interface {
	// Handed adds counts of keys this node owns now.
	Handed(from string, counts []bucket.Count)
	// Copies keeps counts as the copies of the counts of from, whose
	// process has boot id boot ("" if it sent none), or returns why not
	// (from is not a member of this node's ring).
	Copies(from, boot string, counts []bucket.Count) error
}

// Handoff hands req's counts to the Receiver as counts of keys this node
// owns now. It refuses the whole batch, taking nothing, with
// codes.InvalidArgument if it is not valid (see Check), with
// codes.DeadlineExceeded if its sender's deadline passed before it was
// read, and answers codes.Unimplemented without a Receiver.
func (s *Server) Handoff(ctx context.Context, req *peerpb.Counts) (*peerpb.CountsReply, error) {
	if err := late(ctx); err != nil {
		return nil, err
	}
	counts, err := s.counts(req)
	if err != nil {
		return nil, err
	}
	s.receiver.Handed(req.GetFrom(), counts)
	return &peerpb.CountsReply{}, nil
}

// Backup hands req's counts to the Receiver as copies of the sender's.
// Errors are as for Handoff, and codes.FailedPrecondition when the
// Receiver refuses them (the sender is not a member here yet).
func (s *Server) Backup(ctx context.Context, req *peerpb.Counts) (*peerpb.CountsReply, error) {
	if err := late(ctx); err != nil {
		return nil, err
	}
	counts, err := s.counts(req)
	if err != nil {
		return nil, err
	}
	if err := s.receiver.Copies(req.GetFrom(), req.GetBoot(), counts); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &peerpb.CountsReply{}, nil
}

// late returns the error to answer a move with when its sender has given up
// on it already (its deadline passed while it waited, as when this node was
// paused): the sender counts it as not sent and sends the counts again, so
// taking this one as well would count them twice.
func late(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return nil
}

// counts checks req and returns its counts: a sender's name, this node's
// window, at most forward.MaxCheckItems counts, each with a valid key.
func (s *Server) counts(req *peerpb.Counts) ([]bucket.Count, error) {
	if s.receiver == nil {
		return nil, status.Error(codes.Unimplemented, "this node takes no counts")
	}
	cs := req.GetCounts()
	switch from := req.GetFrom(); {
	case from == "" || len(from) > 256:
		return nil, status.Errorf(codes.InvalidArgument, "from is %d bytes, want 1 to 256", len(from))
	case len(req.GetBoot()) > maxBootLen:
		return nil, status.Errorf(codes.InvalidArgument, "boot is %d bytes, at most %d allowed", len(req.GetBoot()), maxBootLen)
	case len(cs) > forward.MaxCheckItems:
		return nil, status.Errorf(codes.InvalidArgument, "%d counts, at most %d allowed", len(cs), forward.MaxCheckItems)
	case time.Duration(req.GetWindowNanos()) != s.store.Window():
		return nil, status.Errorf(codes.InvalidArgument, "window is %v, this node's is %v: all nodes must run the same config",
			time.Duration(req.GetWindowNanos()), s.store.Window())
	}
	out := make([]bucket.Count, len(cs))
	for i, c := range cs {
		if err := config.CheckCounterKey(c.GetKey()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "count %d: %v", i, err)
		}
		out[i] = bucket.Count{Key: c.GetKey(), Start: fromUnixNanos(c.GetStartUnixNanos()),
			Previous: c.GetPrevious(), Current: c.GetCurrent()}
	}
	return out, nil
}

// maxRefund bounds an item's refund: the largest cost a request may
// state.
const maxRefund = 1_000_000_000

// maxWantSlots bounds an item's want_slots.
const maxWantSlots = ownership.MaxSlotLease

// maxSlotHolder bounds an item's slot_holder: a member name (256) and a
// boot id (64), and room.
const maxSlotHolder = 600

// maxBootLen bounds the boot id of a Backup.
const maxBootLen = 64

// Register adds the Peer service to g. Call it before g.Serve.
func (s *Server) Register(g *grpc.Server) {
	peerpb.RegisterPeerServer(g, s)
}

// Drain tells the client of every open CheckStream to end it once its
// requests are answered, and does the same at once on streams opened later,
// so that grpc.Server.GracefulStop does not wait for them. It does not wait
// itself, and unary Check calls are served as before. Call it just before
// GracefulStop; calling it again does nothing.
func (s *Server) Drain() { s.drain() }

// Check counts each item of req at one instant and returns their results in
// order. It refuses the whole batch, counting nothing, with
// codes.InvalidArgument if the batch has more than forward.MaxCheckItems
// items or any item is invalid: a key that config.CheckKey refuses, hits or
// a limit below 1, or a window other than this node's. The wire is a trust
// boundary, so the server checks what the sending middleware checked too.
func (s *Server) Check(ctx context.Context, req *peerpb.CheckRequest) (*peerpb.CheckResponse, error) {
	return s.decide(req, holderOf(ctx))
}

// CheckStream answers each request on rpc as Check would, with the
// request's id; a batch Check would refuse is answered with the refusal's
// code and message, and the stream goes on. It returns when the client
// ends the stream; after Drain, it first asks the client to (see the
// proto).
func (s *Server) CheckStream(rpc peerpb.Peer_CheckStreamServer) error {
	// The notice is sent from its own goroutine, and only then, so the
	// common path pays one uncontended lock per response for it.
	var sendMu sync.Mutex // one Send at a time
	noticed := make(chan struct{})
	stopNotice := context.AfterFunc(s.draining, func() {
		defer close(noticed)
		sendMu.Lock()
		defer sendMu.Unlock()
		// It fails only if the stream has ended, and then nobody needs it.
		_ = rpc.Send(&peerpb.CheckResponse{Draining: true})
	})
	defer func() {
		if !stopNotice() {
			<-noticed // never outlive the handler: the stream is gone after it
		}
	}()
	from := holderOf(rpc.Context())
	for {
		req, err := rpc.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err // the client cancelled or the connection broke: nobody to tell
		}
		resp, err := s.decide(req, from)
		if err != nil {
			st := status.Convert(err)
			resp = &peerpb.CheckResponse{ErrorCode: int32(st.Code()), ErrorMessage: st.Message()}
		}
		resp.Id = req.GetId()
		sendMu.Lock()
		err = rpc.Send(resp)
		sendMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// decide is Check, for both the unary call and the stream, of a call from
// the process from names.
func (s *Server) decide(req *peerpb.CheckRequest, from forward.Holder) (*peerpb.CheckResponse, error) {
	items := req.GetItems()
	if len(items) > forward.MaxCheckItems {
		return nil, status.Errorf(codes.InvalidArgument, "batch has %d items, at most %d allowed", len(items), forward.MaxCheckItems)
	}
	window := s.store.Window()
	for i, it := range items {
		if err := validateItem(i, it, window); err != nil {
			return nil, err
		}
	}

	now := s.now()
	results := make([]peerpb.Result, len(items)) // one allocation for the batch
	resp := &peerpb.CheckResponse{Results: make([]*peerpb.Result, len(items))}
	for i, it := range items {
		d := s.store.Decide(now, forward.Item{
			Key: it.GetKey(), Hits: int(it.GetHits()), Limit: int(it.GetLimit()), Window: window,
			Want: int(it.GetWant()), LeaseID: it.GetLeaseId(), GiveBack: int(it.GetGiveBack()), GiveBackStart: fromUnixNanos(it.GetGiveBackStartUnixNanos()),
			Deadline: fromUnixNanos(it.GetDeadlineUnixNanos()), GiveBackNonce: it.GetGiveBackNonce(),
			Left: int(it.GetLeft()), Reported: it.Left != nil, From: from,
			AcquireSlot: it.GetAcquireSlot(), AcquireUntil: fromUnixNanos(it.GetAcquireUntilUnixNanos()), ReleaseSlot: it.GetReleaseSlot(),
			Refund: int(it.GetRefund()), Read: it.GetRead(), SlotHolder: it.GetSlotHolder(),
			WantSlots: int(it.GetWantSlots()),
		})
		r := &results[i]
		r.Allowed = d.Allowed
		r.Limit = int64(d.Limit)
		r.Remaining = int64(d.Remaining)
		r.ResetUnixNanos = unixNanos(d.ResetAt)
		r.RetryUnixNanos = unixNanos(d.RetryAt)
		r.Granted = int64(d.Granted)
		r.LeaseNanos = int64(d.LeaseFor)
		r.TookBack = int64(d.TookBack)
		r.WindowLeftNanos = int64(d.WindowLeft)
		r.LeaseId = d.LeaseID
		r.Expired = d.Expired
		r.Slot = d.Slot
		r.SlotsHeld = int64(d.SlotsHeld)
		r.GrantedSlots = int64(d.GrantedSlots)
		resp.Results[i] = r
	}
	return resp, nil
}

// validateItem returns an InvalidArgument status saying what is wrong with
// item i, or nil. The message never holds the key, which may be an API key.
func validateItem(i int, it *peerpb.Item, window time.Duration) error {
	if err := config.CheckCounterKey(it.GetKey()); err != nil {
		return status.Errorf(codes.InvalidArgument, "item %d: %v", i, err)
	}
	switch h, w, g, l := it.GetHits(), it.GetWant(), it.GetGiveBack(), it.GetLeft(); {
	case h < 0 || w < 0 || g < 0 || l < 0:
		return status.Errorf(codes.InvalidArgument, "item %d: hits %d, want %d, give_back %d, left %d: none may be negative", i, h, w, g, l)
	case h == 0 && w == 0 && g == 0 && it.Left == nil && it.GetAcquireSlot() == 0 && it.GetReleaseSlot() == 0 && it.GetRefund() == 0 && !it.GetRead():
		return status.Errorf(codes.InvalidArgument, "item %d: hits, want, give_back, acquire_slot, release_slot and refund are all 0, and neither left nor read is set: nothing to do", i)
	case it.GetRefund() < 0 || it.GetRefund() > maxRefund:
		return status.Errorf(codes.InvalidArgument, "item %d: refund %d: want 0 to %d", i, it.GetRefund(), maxRefund)
	case len(it.GetSlotHolder()) > maxSlotHolder || (it.GetSlotHolder() != "" && it.GetAcquireSlot() == 0):
		return status.Errorf(codes.InvalidArgument, "item %d: slot_holder of %d bytes: want at most %d, with acquire_slot", i, len(it.GetSlotHolder()), maxSlotHolder)
	case it.GetWantSlots() < 0 || it.GetWantSlots() > maxWantSlots:
		return status.Errorf(codes.InvalidArgument, "item %d: want_slots %d: want 0 to %d", i, it.GetWantSlots(), maxWantSlots)
	case it.GetAcquireSlot() != 0 && it.GetAcquireUntilUnixNanos() <= 0:
		return status.Errorf(codes.InvalidArgument, "item %d: acquire_slot without acquire_until_unix_nanos", i)
	case w > ownership.MaxLeaseHits || g > ownership.MaxLeaseHits || l > ownership.MaxLeaseHits:
		return status.Errorf(codes.InvalidArgument, "item %d: want %d, give_back %d, left %d: at most %d each", i, w, g, l, ownership.MaxLeaseHits)
	}
	if l := it.GetLimit(); l < 1 {
		return status.Errorf(codes.InvalidArgument, "item %d: limit is %d, want at least 1", i, l)
	}
	if w := time.Duration(it.GetWindowNanos()); w != window {
		return status.Errorf(codes.InvalidArgument,
			"item %d: window is %v, this node's is %v: all nodes must run the same config", i, w, window)
	}
	return nil
}
