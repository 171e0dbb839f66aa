// Package throttle paces work to the rates a task spec sets (rows and megabytes per second). A
// nil *Limiter does nothing, so callers need no special case for "unlimited".
package throttle

import (
	"context"

	"golang.org/x/time/rate"
)

// Limiter limits rows per second and bytes per second.
type Limiter struct {
	rows  *rate.Limiter
	bytes *rate.Limiter
	// The task-wide rates, of which SetShare gives this limiter a part.
	rowsPerSecond, bytesPerSecond float64
}

// New returns a limiter for rowsPerSecond and mbPerSecond (0 = unlimited), or nil when both are
// unlimited.
func New(rowsPerSecond, mbPerSecond float64) *Limiter {
	if rowsPerSecond <= 0 && mbPerSecond <= 0 {
		return nil
	}
	l := &Limiter{rowsPerSecond: rowsPerSecond, bytesPerSecond: mbPerSecond * 1024 * 1024}
	if rowsPerSecond > 0 {
		l.rows = rate.NewLimiter(rate.Limit(rowsPerSecond), max(1, int(rowsPerSecond/10)))
	}
	if mbPerSecond > 0 {
		bps := mbPerSecond * 1024 * 1024
		l.bytes = rate.NewLimiter(rate.Limit(bps), max(1, int(bps/10)))
	}
	return l
}

// Shared returns a limiter for one of share workers that together keep to the rates: each gets
// 1/share of them until SetShare says how many run now.
func Shared(rowsPerSecond, mbPerSecond float64, share int) *Limiter {
	share = max(1, share)
	l := New(rowsPerSecond/float64(share), mbPerSecond/float64(share))
	if l != nil {
		l.rowsPerSecond, l.bytesPerSecond = rowsPerSecond, mbPerSecond*1024*1024
	}
	return l
}

// SetShare gives the limiter 1/share of the rates it was made for (with Shared): call it when
// the number of workers running at once changes.
func (l *Limiter) SetShare(share int) {
	if l == nil {
		return
	}
	share = max(1, share)
	if l.rows != nil {
		l.rows.SetLimit(rate.Limit(l.rowsPerSecond / float64(share)))
	}
	if l.bytes != nil {
		l.bytes.SetLimit(rate.Limit(l.bytesPerSecond / float64(share)))
	}
}

// CountsRows reports whether the limiter needs rows counted.
func (l *Limiter) CountsRows() bool { return l != nil && l.rows != nil }

// Wait blocks until rows rows and n bytes may pass.
func (l *Limiter) Wait(ctx context.Context, rows, n int) error {
	if l == nil {
		return nil
	}
	if err := waitN(ctx, l.rows, rows); err != nil {
		return err
	}
	return waitN(ctx, l.bytes, n)
}

// waitN takes n tokens, in bursts no larger than the limiter's.
func waitN(ctx context.Context, lim *rate.Limiter, n int) error {
	if lim == nil {
		return nil
	}
	for n > 0 {
		take := min(n, lim.Burst())
		if err := lim.WaitN(ctx, take); err != nil {
			return err
		}
		n -= take
	}
	return nil
}
