package device

import (
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

type volatileItem struct {
	msg     *transport.Message
	expires time.Time // zero: never
}

// volatileQueue is the bounded FIFO of volatile-retention messages. It is
// guarded by Device.mu.
type volatileQueue struct {
	limit int
	items []volatileItem
}

func (q *volatileQueue) len() int { return len(q.items) }

// push appends it and reports whether the oldest item was dropped to make
// room.
func (q *volatileQueue) push(it volatileItem) (dropped bool) {
	if len(q.items) >= q.limit {
		q.items = q.items[1:]
		dropped = true
	}
	q.items = append(q.items, it)
	return dropped
}

// pop removes up to n items from the front, skipping expired ones; it
// returns the items and how many expired.
func (q *volatileQueue) pop(n int, now time.Time) ([]volatileItem, int) {
	var out []volatileItem
	expired := 0
	for len(q.items) > 0 && len(out) < n {
		it := q.items[0]
		q.items = q.items[1:]
		if !it.expires.IsZero() && !now.Before(it.expires) {
			expired++
			continue
		}
		out = append(out, it)
	}
	if len(q.items) == 0 {
		q.items = nil
	}
	return out, expired
}

// unshift puts items back at the front, in order (after a failed send). It
// returns how many of the newest items were dropped to respect the limit.
func (q *volatileQueue) unshift(items []volatileItem) (dropped int) {
	if len(items) == 0 {
		return 0
	}
	back := make([]volatileItem, 0, len(items)+len(q.items))
	back = append(back, items...)
	back = append(back, q.items...)
	if len(back) > q.limit {
		dropped = len(back) - q.limit
		back = back[:q.limit]
	}
	q.items = back
	return dropped
}
