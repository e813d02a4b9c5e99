package tierlimit

import (
	"context"
	"errors"
	"fmt"
)

// Close stops the Limiter gracefully: in a cluster it tells the peers it
// leaves (so they take over its keys at once), stops forwarding, asks the
// peers to end their streams to it and waits for them until ctx ends; then
// it stops what is left and takes its series off Config.Registerer. Before
// it leaves, it hands the counts of the keys it owns to the members that
// own them next, so a rolling restart resets no key, and the concurrency
// slots of the jobs running with them. Drain
// your HTTP server first: the middleware still answers afterwards, counting
// locally. Calling Close again returns the first call's result.
func (l *Limiter) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.closing.Store(true)
		l.closeErr = l.stop(ctx)
	})
	return l.closeErr
}

// stop is Close, once.
func (l *Limiter) stop(ctx context.Context) error {
	var errs []error
	if l.node != nil {
		// Unused leased hits go back while the owners still own them.
		l.router.ReturnLeases(ctx)
		// Peers take this node out of their rings when they hear it is
		// leaving; then its counts go to the members that own their keys
		// without it, before it is gone.
		if err := l.node.Depart(leaveTimeout); err != nil {
			l.log.Warn("could not announce the departure", "err", err)
		}
		// Depart reported this node leaving: out of its own ring now, so
		// that the Keeper hands its counts to the owners without it.
		l.applyMembers()
		if err := l.keeper.Leave(ctx); err != nil {
			l.log.Warn("counts not handed over; their keys start afresh at their new owners", "err", err)
		}
		// The jobs running of the keys it owned go with them.
		l.router.HandOffSlots(ctx)
		if err := l.node.Leave(leaveTimeout); err != nil {
			// No peer confirmed the leave: they are all stopping too, or cut
			// off. They will see this node fail instead; stopping goes on.
			l.log.Warn("leave not confirmed by any peer; they will detect the node as failed", "err", err)
		}
		if err := l.node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop gossip: %w", err))
		}
		l.router.Close()
		l.endpoint.Stop(ctx)
		// Checks that peers sent before they heard were counted here.
		if err := l.keeper.Leave(ctx); err != nil {
			l.log.Warn("late counts not handed over", "err", err)
		}
		if err := l.book.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close peer clients: %w", err))
		}
	}
	l.stopBG()
	l.bg.Wait()
	l.metrics.unregister()
	l.log.Info("limiter stopped")
	return errors.Join(errs...)
}

// kill stops everything at once without telling anyone, as a crash would
// look to the peers (tests use it), and cleans up after a failed New.
func (l *Limiter) kill() {
	l.closeOnce.Do(func() {
		l.closing.Store(true)
		l.crash()
	})
}

// crash is kill, once.
func (l *Limiter) crash() {
	if l.node != nil {
		_ = l.node.Close()
	}
	if l.router != nil {
		l.router.Close()
	}
	if l.endpoint != nil {
		l.endpoint.Kill()
	}
	if l.book != nil {
		_ = l.book.Close()
	}
	l.stopBG()
	l.bg.Wait()
	l.metrics.unregister()
}
