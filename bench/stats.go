package bench

import (
	"math"
	"slices"
	"time"
)

// Stat summarises one metric over the repeats of a run: Values holds one
// value per repeat, in the order of the rounds, so that two metrics of the
// same run can be paired round by round.
type Stat struct {
	Unit   string    `json:"unit"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Mean   float64   `json:"mean"`
	Stddev float64   `json:"stddev"`
	Values []float64 `json:"values"`
}

// newStat summarises values.
func newStat(unit string, values []float64) Stat {
	s := Stat{Unit: unit, Values: slices.Clone(values)}
	if len(values) == 0 {
		return s
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	s.Median = median(sorted)
	var sum float64
	for _, v := range values {
		sum += v
	}
	s.Mean = sum / float64(len(values))
	if len(values) > 1 {
		var sq float64
		for _, v := range values {
			sq += (v - s.Mean) * (v - s.Mean)
		}
		s.Stddev = math.Sqrt(sq / float64(len(values)-1))
	}
	return s
}

// Spread returns the half range of the values relative to the median, the
// "±" figure printed after a median.
func (s Stat) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / 2 / math.Abs(s.Median)
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile returns the q-quantile (0 to 1) of sorted durations, by the
// nearest-rank method.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return sorted[i]
}

// Quantile is one point of a latency distribution: the fraction Q of calls
// that took at most Ms milliseconds.
type Quantile struct {
	Q  float64 `json:"q"`
	Ms float64 `json:"ms"`
}

// distributionPoints are the quantiles kept of a latency distribution:
// dense in the tail, where the stacks differ most.
var distributionPoints = []float64{
	0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9,
	0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 1,
}

// distribution returns the quantiles of sorted durations at
// distributionPoints.
func distribution(sorted []time.Duration) []Quantile {
	if len(sorted) == 0 {
		return nil
	}
	out := make([]Quantile, 0, len(distributionPoints))
	for _, q := range distributionPoints {
		out = append(out, Quantile{Q: q, Ms: ms(percentile(sorted, q))})
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
