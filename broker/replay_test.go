package broker

import (
	"testing"
)

func TestReplayCache(t *testing.T) {
	t.Parallel()
	id := func(b byte) [idLen]byte { return [idLen]byte{b} }
	type step struct {
		id     byte
		time   int64
		d      delivery
		oldest int64
		want   Reason
	}
	core := delivery{count: 1}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"new ids accepted", 8, []step{
			{1, 10, core, 0, ""}, {2, 11, core, 0, ""}, {3, 9, core, 0, ""},
		}},
		{"same id refused", 8, []step{
			{1, 10, core, 0, ""}, {1, 10, core, 0, ReasonReplayed},
		}},
		{"stream redelivery of the same sequence accepted", 8, []step{
			{1, 10, delivery{seq: 5, count: 1}, 0, ""},
			{1, 10, delivery{seq: 5, count: 2}, 0, ""},
		}},
		{"same id at another sequence refused", 8, []step{
			{1, 10, delivery{seq: 5, count: 1}, 0, ""},
			{1, 10, delivery{seq: 6, count: 1}, 0, ReasonReplayed},
			{1, 10, delivery{seq: 7, count: 3}, 0, ReasonReplayed},
		}},
		{"forgotten redelivery vouched by the stream", 1, []step{
			{1, 10, delivery{seq: 1, count: 1}, 0, ""},
			{2, 20, delivery{seq: 2, count: 1}, 0, ""},
			{1, 10, delivery{seq: 1, count: 2}, 0, ""},
		}},
		{"full cache raises the floor", 2, []step{
			{1, 10, core, 0, ""}, {2, 20, core, 0, ""}, {3, 30, core, 0, ""},
			// id 1 was forgotten: its replay must still be refused.
			{1, 10, core, 0, ReasonExpired},
			{4, 10, core, 0, ReasonExpired},
			{5, 11, core, 0, ""},
		}},
		{"ids past the max age are forgotten without raising the floor", 2, []step{
			{1, 10, core, 0, ""}, {2, 20, core, 0, ""},
			{3, 30, core, 15, ""},
			{4, 16, core, 15, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newReplayCache(tt.max)
			for i, s := range tt.steps {
				got := ReasonOf(c.check(id(s.id), s.time, s.d, s.oldest))
				if got != s.want {
					t.Fatalf("step %d (id %d at %d): %q, want %q", i, s.id, s.time, got, s.want)
				}
				if c.len() > tt.max {
					t.Fatalf("step %d: %d ids remembered, max %d", i, c.len(), tt.max)
				}
			}
		})
	}
}

func TestReplayHeapOrder(t *testing.T) {
	t.Parallel()
	var h byTime
	times := []int64{5, 3, 9, 1, 7, 3, 8, 2}
	for i, tm := range times {
		h.push(timedID{time: tm, id: [idLen]byte{byte(i)}})
	}
	last := int64(-1)
	for len(h) > 0 {
		x := h.pop()
		if x.time < last {
			t.Fatalf("popped %d after %d", x.time, last)
		}
		last = x.time
	}
}
