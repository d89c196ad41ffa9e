package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBucketsTileEveryValue(t *testing.T) {
	for i := 0; i < numBuckets-1; i++ {
		hi := bucketHigh(i)
		if got := bucketOf(hi); got != i {
			t.Fatalf("bucketOf(bucketHigh(%d) = %d) = %d", i, hi, got)
		}
		if got := bucketOf(hi + 1); got != i+1 {
			t.Fatalf("bucketOf(%d) = %d, want the next bucket %d", hi+1, got, i+1)
		}
	}
	if got := bucketOf(1<<63 - 1); got != numBuckets-1 {
		t.Fatalf("the largest value is in bucket %d, want %d", got, numBuckets-1)
	}
}

func TestHistogramQuantilesAreMonotoneAndWithinTheBucketWidth(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	h := NewHistogram()
	var vals []time.Duration
	for i := 0; i < 20000; i++ {
		// Log-uniform from 1 us to about 1 s.
		d := time.Duration(float64(int64(1000)<<r.IntN(20)) * (1 + r.Float64()))
		vals = append(vals, d)
		h.Record(d)
	}
	slices.Sort(vals)
	prev := time.Duration(0)
	for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		got := h.Quantile(q)
		if got < prev {
			t.Fatalf("Quantile(%v) = %v is below the previous quantile %v", q, got, prev)
		}
		prev = got
		idx := max(int(float64(len(vals))*q+0.999999)-1, 0)
		exact := vals[idx]
		if got < exact || float64(got-exact) > float64(exact)/subCount+1 {
			t.Errorf("Quantile(%v) = %v, exact %v: not within one bucket above", q, got, exact)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
		t.Errorf("min/max = %v/%v, want %v/%v", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
	}
	if h.Quantile(1) != h.Max() {
		t.Errorf("Quantile(1) = %v, want the max %v", h.Quantile(1), h.Max())
	}
	var octaves uint64
	for _, o := range h.Octaves() {
		octaves += o.Count
	}
	if octaves != h.Count() {
		t.Errorf("the octaves count %d, the histogram %d", octaves, h.Count())
	}
}

func TestHistogramMergeAddsCounts(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		all.Record(d)
	}
	a.Merge(b)
	a.Merge(NewHistogram())
	if a.Count() != all.Count() || a.Max() != all.Max() || a.Min() != all.Min() {
		t.Fatalf("merged count/min/max %d/%v/%v, want %d/%v/%v", a.Count(), a.Min(), a.Max(), all.Count(), all.Min(), all.Max())
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged Quantile(%v) = %v, want %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
}

func TestEmptyHistogramReportsZeros(t *testing.T) {
	h := NewHistogram()
	s := h.Summary()
	if s.Count != 0 || s.MaxUS != 0 || s.P99US != 0 || s.Octaves != nil {
		t.Fatalf("empty summary %+v", s)
	}
	h.Record(-time.Second)
	if h.Max() != 0 || h.Count() != 1 {
		t.Fatalf("a negative duration counts as 0: max %v count %d", h.Max(), h.Count())
	}
}
