package broker

import (
	"sync"
	"time"
)

// replayCache remembers the message ids a subscription accepted within its
// maximum age, to refuse an event delivered twice. It holds at most max
// ids. When full it forgets the oldest id and from then on refuses every
// event signed no later than that id's event (the floor): an event it
// accepts is always either new or one it still remembers.
type replayCache struct {
	max int

	mu    sync.Mutex
	floor int64
	seen  map[[idLen]byte]seenEntry
	order byTime
}

type seenEntry struct {
	time int64
	seq  uint64
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[[idLen]byte]seenEntry)}
}

// check records an accepted event, or refuses a replay. oldest is the
// signing time below which events are refused as expired anyway, so that
// ids older than it need no remembering.
func (c *replayCache) check(id [idLen]byte, t int64, d delivery, oldest int64) *RefusalError {
	c.mu.Lock()
	defer c.mu.Unlock()

	for len(c.order) > 0 && c.order[0].time < oldest {
		old := c.order.pop()
		delete(c.seen, old.id)
	}
	prev, known := c.seen[id]
	switch {
	case known && d.seq != 0 && prev.seq == d.seq:
		// The stream delivers the same stored event again: a redelivery
		// after a failed handler or a lost acknowledgement.
		return nil
	case known:
		return refuse(ReasonReplayed, "message id already delivered to this subscription")
	case d.count > 1 && d.seq != 0:
		// A redelivery whose first delivery was accepted before this cache
		// was made or after it forgot the id: the stream vouches for it.
		return nil
	case t <= c.floor:
		return refuse(ReasonExpired,
			"event signed at %s, before the oldest event this subscription still "+
				"remembers (%s); raise the replay cache size",
			time.Unix(0, t).UTC().Format(time.RFC3339Nano),
			time.Unix(0, c.floor).UTC().Format(time.RFC3339Nano))
	}
	c.seen[id] = seenEntry{time: t, seq: d.seq}
	c.order.push(timedID{time: t, id: id})
	if len(c.order) > c.max {
		old := c.order.pop()
		delete(c.seen, old.id)
		c.floor = max(c.floor, old.time)
	}
	return nil
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type timedID struct {
	time int64
	id   [idLen]byte
}

// byTime is a min-heap of ids by signing time; written out rather than
// through container/heap to avoid boxing an entry per event.
type byTime []timedID

func (h *byTime) push(x timedID) {
	*h = append(*h, x)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if a[p].time <= a[i].time {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *byTime) pop() timedID {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a[l].time < a[m].time {
			m = l
		}
		if r < len(a) && a[r].time < a[m].time {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
