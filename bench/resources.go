package bench

import (
	"runtime"
	"time"
)

// usage is a snapshot of what the process has spent so far.
type usage struct {
	wall    time.Time
	cpu     time.Duration
	mallocs uint64
	bytes   uint64
}

// snapshot reads the process CPU time and the heap counters. It stops the
// world briefly (runtime.ReadMemStats), so it is taken outside timed loops.
func snapshot() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cpu, _ := processCPU()
	return usage{wall: time.Now(), cpu: cpu, mallocs: ms.Mallocs, bytes: ms.TotalAlloc}
}

// spent is what the process spent between two snapshots, over ops
// operations. Client and server run in the same process, so per-op figures
// hold both sides of each call or handshake.
type spent struct {
	wall    time.Duration
	cpu     time.Duration
	mallocs uint64
	bytes   uint64
}

func (u usage) since(before usage) spent {
	return spent{
		wall:    u.wall.Sub(before.wall),
		cpu:     u.cpu - before.cpu,
		mallocs: u.mallocs - before.mallocs,
		bytes:   u.bytes - before.bytes,
	}
}

// perOp divides the resource figures by n operations into metric values:
// allocations, bytes and CPU microseconds per operation.
func (s spent) perOp(n int) (allocs, bytes, cpuMicros float64) {
	if n <= 0 {
		return 0, 0, 0
	}
	f := float64(n)
	return float64(s.mallocs) / f, float64(s.bytes) / f, float64(s.cpu) / float64(time.Microsecond) / f
}

// cpuMeasured reports whether this platform reports process CPU time.
func cpuMeasured() bool {
	_, ok := processCPU()
	return ok
}
