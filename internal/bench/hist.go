package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of bits of precision a Histogram keeps below each
// power of two: 2^subBits sub-buckets per octave, a relative error under
// 1/2^subBits (1.6%).
const (
	subBits  = 6
	subCount = 1 << subBits
	// numBuckets covers every non-negative int64.
	numBuckets = (63-subBits)*subCount + subCount
)

// Histogram counts durations in log-linear buckets, like an HDR histogram:
// exact below 128 ns, then 64 buckets per power of two. It uses a fixed
// 30 kB of memory whatever it records. A Histogram is not safe for
// concurrent use; give each goroutine its own and Merge them.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{min: math.MaxInt64} }

// bucketOf returns the bucket index of v >= 0.
func bucketOf(v int64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - (subBits + 1)
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// bucketHigh returns the largest value of bucket i.
func bucketHigh(i int) int64 {
	if i < 2*subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	sub := int64(i%subCount + subCount)
	hi := (sub+1)<<shift - 1
	if hi < 0 { // the last bucket
		return math.MaxInt64
	}
	return hi
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds the counts of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded duration (0 when empty).
func (h *Histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.max)
}

// Min returns the smallest recorded duration (0 when empty).
func (h *Histogram) Min() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Mean returns the mean of the recorded durations (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the upper end of the bucket holding the q-th quantile
// (0 <= q <= 1), never above Max: an overestimate by at most the bucket
// width. Quantile is monotone in q. It returns 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(bucketHigh(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// Octave is the count of recorded durations in (Above, UpTo].
type Octave struct {
	// UpTo is the upper end, in microseconds.
	UpToUS float64 `json:"upToUs"`
	// Count is how many durations fell in the range.
	Count uint64 `json:"count"`
}

// Octaves returns the recorded durations counted by powers of two of
// microseconds (up to 1 us, 2 us, 4 us, ...), from the first non-empty one
// to the last. A bucket counts in the octave that holds its upper end.
func (h *Histogram) Octaves() []Octave {
	if h.n == 0 {
		return nil
	}
	var counts [48]uint64 // 1000<<47 ns is over four years
	first, last := len(counts), -1
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		k := 0
		for hi := bucketHigh(i); k < len(counts)-1 && hi > int64(1000)<<k; k++ {
		}
		counts[k] += c
		first, last = min(first, k), max(last, k)
	}
	out := make([]Octave, 0, last-first+1)
	for k := first; k <= last; k++ {
		out = append(out, Octave{UpToUS: float64(int64(1) << k), Count: counts[k]})
	}
	return out
}

// Summary is what reports show of a Histogram, in microseconds.
type Summary struct {
	// Count is the number of recorded durations.
	Count uint64 `json:"count"`
	// MinUS, MeanUS, P50US, P90US, P99US, P999US and MaxUS are the minimum,
	// the mean, the percentiles and the maximum.
	MinUS  float64 `json:"minUs"`
	MeanUS float64 `json:"meanUs"`
	P50US  float64 `json:"p50Us"`
	P90US  float64 `json:"p90Us"`
	P99US  float64 `json:"p99Us"`
	P999US float64 `json:"p999Us"`
	MaxUS  float64 `json:"maxUs"`
	// Octaves is the histogram by powers of two of microseconds.
	Octaves []Octave `json:"octaves,omitempty"`
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Summary returns the histogram's summary.
func (h *Histogram) Summary() *Summary {
	return &Summary{
		Count:   h.n,
		MinUS:   us(h.Min()),
		MeanUS:  us(h.Mean()),
		P50US:   us(h.Quantile(0.50)),
		P90US:   us(h.Quantile(0.90)),
		P99US:   us(h.Quantile(0.99)),
		P999US:  us(h.Quantile(0.999)),
		MaxUS:   us(h.Max()),
		Octaves: h.Octaves(),
	}
}
