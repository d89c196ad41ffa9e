package metrics_test

import (
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1" // registers the echo routes
	"github.com/pomelo-go/pomelo/internal/metrics"
	"github.com/pomelo-go/pomelo/runtime"
)

const echoRoute = "echo.echoHandler.echo"

func TestNilServerRecordsNothingAndDoesNotPanic(t *testing.T) {
	var m *metrics.Server
	m.Request(echoRoute, true, nil, time.Millisecond)
	m.Forwarded()
	m.ForwardHandled()
	m.ForwardBatch(3)
	m.Pushed()
	m.Kicked("relogin")
	if m.RPCInterceptor() == nil {
		t.Fatal("a nil server's interceptor is nil")
	}
}

func TestRouteLabelsAreBoundedToKnownRoutes(t *testing.T) {
	m := metrics.New(metrics.Options{Server: "s-1", Routes: func(r string) bool { return r == "s.local.route" }})
	m.Request(echoRoute, true, nil, time.Millisecond)
	m.Request("s.local.route", false, nil, time.Millisecond)
	for i := range 50 {
		m.Request("x.hostile.r"+strings.Repeat("a", i), false, runtime.Errorf(runtime.ErrUnknownRoute, "no"), time.Millisecond)
	}
	m.Request(echoRoute, true, runtime.NewError(42, "app"), time.Millisecond)
	m.Request(echoRoute, true, errors.New("plain"), time.Millisecond)
	got := samples(t, m, "pomelo_requests_total")
	want := map[string]float64{
		`code="APPLICATION",route="echo.echoHandler.echo",server="s-1"`: 1,
		`code="INTERNAL",route="echo.echoHandler.echo",server="s-1"`:    1,
		`code="UNKNOWN_ROUTE",route="other",server="s-1"`:               50,
		`code="ok",route="echo.echoHandler.echo",server="s-1"`:          1,
		`code="ok",route="s.local.route",server="s-1"`:                  1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestKickReasonsAreBounded(t *testing.T) {
	m := metrics.New(metrics.Options{Server: "s-1", KickReasons: []string{"banned"}})
	m.Kicked("relogin")
	m.Kicked("banned")
	m.Kicked("user 123 said something")
	m.Kicked("user 456 said something")
	got := samples(t, m, "pomelo_kicks_total")
	want := map[string]float64{`reason="relogin",server="s-1"`: 1, `reason="banned",server="s-1"`: 1, `reason="other",server="s-1"`: 2}
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestRecordingASuccessfulRequestDoesNotAllocate(t *testing.T) {
	m := metrics.New(metrics.Options{Server: "s-1"})
	m.Request(echoRoute, true, nil, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() {
		m.Request(echoRoute, true, nil, time.Millisecond)
		m.Forwarded()
		m.ForwardBatch(4)
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// samples returns the non-zero samples of the counter name, by their
// labels.
func samples(t *testing.T, m *metrics.Server, name string) map[string]float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			if v := mt.GetCounter().GetValue(); v != 0 {
				var ls []string
				for _, l := range mt.GetLabel() {
					ls = append(ls, l.GetName()+"="+strconv.Quote(l.GetValue()))
				}
				out[strings.Join(ls, ",")] = v
			}
		}
	}
	return out
}

// BenchmarkRequest is what a frontend pays per answered request with
// metrics on.
func BenchmarkRequest(b *testing.B) {
	m := metrics.New(metrics.Options{Server: "s-1"})
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		m.Request(echoRoute, true, nil, time.Since(start))
	}
}
