package source

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/errclass"
)

// switchPoints parses a timeline history file (TIMELINE_HISTORY): for each earlier timeline, the
// LSN at which the server's history left it.
func switchPoints(content []byte) (map[int32]pglogrepl.LSN, error) {
	out := map[int32]pglogrepl.LSN{}
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("timeline history line %q", line)
		}
		tli, err := strconv.ParseInt(fields[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("timeline history line %q: %w", line, err)
		}
		lsn, err := pglogrepl.ParseLSN(fields[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %q: %w", line, err)
		}
		out[int32(tli)] = lsn
	}
	return out, sc.Err()
}

// timelineVerdict judges a stream that starts on the source's timeline current with the
// destination's changes applied up to applied, read on timeline recorded (0: not known). The
// source failed over or was restored when the timelines differ. That loses nothing only when the
// server's history left the recorded timeline at or after applied: every applied change is then
// part of the new history, and the slot's changes continue it. Otherwise the destination holds
// changes the source no longer has, and the stream cannot continue.
func timelineVerdict(applied pglogrepl.LSN, recorded, current int32, history map[int32]pglogrepl.LSN) error {
	switch {
	case recorded == 0 || recorded == current:
		return nil
	case current < recorded:
		return errclass.Permanent(fmt.Errorf("the source is on timeline %d but the destination applied changes read on timeline %d: "+
			"this is not the server the task streamed from (a restore from an older backup?); the change stream cannot continue: release the task and start it again",
			current, recorded))
	}
	switched, ok := history[recorded]
	if !ok {
		return errclass.Permanent(fmt.Errorf("the source (timeline %d) has no timeline %d in its history, on which the destination's changes were read: "+
			"this is not the server the task streamed from; the change stream cannot continue: release the task and start it again", current, recorded))
	}
	if applied > switched {
		return errclass.Permanent(fmt.Errorf("the source failed over: its history left timeline %d at %s, but the destination had applied changes up to %s of it: "+
			"the changes after %s were lost with the old server and are still on the destination; the change stream cannot continue: "+
			"release the task and start it again (a failover loses nothing only when the new server had every change the task applied)",
			recorded, switched, applied, switched))
	}
	return nil
}

// CheckTimeline applies timelineVerdict to the source behind repl, reading its history when its
// timeline differs from the recorded one.
func CheckTimeline(ctx context.Context, repl *pgconn.PgConn, applied pglogrepl.LSN, recorded, current int32) (followed bool, err error) {
	if recorded == 0 || recorded == current {
		return false, nil
	}
	history := map[int32]pglogrepl.LSN{}
	if current > 1 {
		res, err := pglogrepl.TimelineHistory(ctx, repl, current)
		if err != nil {
			return false, fmt.Errorf("read the source's timeline history: %w", err)
		}
		if history, err = switchPoints(res.Content); err != nil {
			return false, fmt.Errorf("read the source's timeline history: %w", err)
		}
	}
	return true, timelineVerdict(applied, recorded, current, history)
}
