package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	benchv1 "github.com/moatrpc/moat/proto/moat/bench/v1"
)

// callTimeout bounds a call that hangs, past the end of a measurement.
const callTimeout = 30 * time.Second

func unaryCases(cfg Config, s *startedStack, w Workload) []*caseRun {
	var cases []*caseRun
	for _, n := range cfg.Concurrency {
		params := map[string]string{"workload": w.Name(), "concurrency": strconv.Itoa(n)}
		measure := func(ctx context.Context) (sample, error) {
			return measureUnary(ctx, s.ep.conn, w, n, cfg.Warmup, cfg.Duration)
		}
		cases = append(cases, newCase(KindUnary, s.name, params, measure))
	}
	return cases
}

// measureUnary keeps inFlight calls of w going on conn for d, after a
// warm-up of the same shape, and returns throughput, latency percentiles
// and what each call cost the process (client and server together).
func measureUnary(
	ctx context.Context,
	conn grpc.ClientConnInterface,
	w Workload,
	inFlight int,
	warmup, d time.Duration,
) (sample, error) {
	warm, err := drive(ctx, conn, w, inFlight, warmup, 0)
	if err != nil {
		return sample{}, err
	}
	// Size the latency buffers from the warm-up rate, so that recording
	// does not allocate while measuring.
	expect := 1024
	if warmup > 0 {
		expect = int(float64(warm.calls)/warmup.Seconds()*d.Seconds()*1.5)/inFlight + 1024
	}
	before := snapshot()
	res, err := drive(ctx, conn, w, inFlight, d, expect)
	after := snapshot()
	if err != nil {
		return sample{}, err
	}
	if res.calls == 0 {
		return sample{}, errors.New("no call finished")
	}
	allocs, bytes, cpu := after.since(before).perOp(res.calls)
	slices.Sort(res.latencies)
	qps := float64(res.calls) / res.elapsed.Seconds()
	return sample{
		values: []value{
			{"calls_per_s", "calls/s", qps},
			{"p50_ms", "ms", ms(percentile(res.latencies, 0.50))},
			{"p90_ms", "ms", ms(percentile(res.latencies, 0.90))},
			{"p99_ms", "ms", ms(percentile(res.latencies, 0.99))},
			{"allocs_per_call", "allocs", allocs},
			{"bytes_per_call", "B", bytes},
			{"cpu_us_per_call", "µs", cpu},
		},
		latencies: res.latencies,
		summary:   fmt.Sprintf("%.0f calls/s, p99 %.3f ms", qps, ms(percentile(res.latencies, 0.99))),
	}, nil
}

type driveResult struct {
	calls     int
	elapsed   time.Duration
	latencies []time.Duration
}

// drive runs inFlight workers calling w back to back until d has passed.
// With record > 0 each worker records the latency of its calls, with a
// buffer of that many entries to start with. The first error stops every
// worker.
func drive(
	ctx context.Context,
	conn grpc.ClientConnInterface,
	w Workload,
	inFlight int,
	d time.Duration,
	record int,
) (driveResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+callTimeout)
	defer cancel()
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		firstErr error
		errOnce  sync.Once
		counts   = make([]int, inFlight)
		lats     = make([][]time.Duration, inFlight)
		begin    = make(chan struct{})
	)
	for i := range inFlight {
		if record > 0 {
			lats[i] = make([]time.Duration, 0, record)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			defer func() { counts[i] = n }()
			<-begin
			deadline := time.Now().Add(d)
			for !stop.Load() {
				t0 := time.Now()
				if t0.After(deadline) {
					return
				}
				if err := w.Call(ctx, conn); err != nil {
					errOnce.Do(func() { firstErr = err })
					stop.Store(true)
					return
				}
				n++
				if record > 0 {
					lats[i] = append(lats[i], time.Since(t0))
				}
			}
		}()
	}
	start := time.Now()
	close(begin)
	wg.Wait()
	res := driveResult{elapsed: time.Since(start)}
	for i := range inFlight {
		res.calls += counts[i]
		res.latencies = append(res.latencies, lats[i]...)
	}
	if firstErr != nil {
		return res, firstErr
	}
	return res, nil
}

// streamChunks is the length of one Download stream: 4 MiB.
const streamChunks = 64

func streamCase(cfg Config, s *startedStack) *caseRun {
	params := map[string]string{}
	return newCase(KindStream, s.name, params, func(ctx context.Context) (sample, error) {
		return measureStream(ctx, s.ep.conn, cfg.Warmup, cfg.Duration)
	})
}

// measureStream downloads [streamChunks] messages of [ChunkSize] bytes per
// stream, one stream after the other, for d.
func measureStream(
	ctx context.Context,
	conn grpc.ClientConnInterface,
	warmup, d time.Duration,
) (sample, error) {
	if _, _, err := download(ctx, conn, warmup); err != nil {
		return sample{}, err
	}
	before := snapshot()
	n, elapsed, err := download(ctx, conn, d)
	after := snapshot()
	if err != nil {
		return sample{}, err
	}
	mb := float64(n) / 1e6
	spent := after.since(before)
	rate := mb / elapsed.Seconds()
	return sample{
		values: []value{
			{"mb_per_s", "MB/s", rate},
			{"cpu_us_per_mb", "µs", float64(spent.cpu) / float64(time.Microsecond) / mb},
			{"allocs_per_mb", "allocs", float64(spent.mallocs) / mb},
		},
		summary: fmt.Sprintf("%.0f MB/s", rate),
	}, nil
}

// download runs streams back to back for at least d and returns the bytes
// received.
func download(
	ctx context.Context,
	conn grpc.ClientConnInterface,
	d time.Duration,
) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d+callTimeout)
	defer cancel()
	client := benchv1.NewBenchServiceClient(conn)
	req := &benchv1.DownloadRequest{ChunkSize: ChunkSize, Chunks: streamChunks}
	total := 0
	start := time.Now()
	for time.Since(start) < d || total == 0 {
		stream, err := client.Download(ctx, req)
		if err != nil {
			return total, 0, err
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return total, 0, err
			}
			total += len(msg.GetData())
		}
	}
	return total, time.Since(start), nil
}
