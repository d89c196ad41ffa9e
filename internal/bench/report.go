package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteText writes r for people.
func WriteText(out io.Writer, r *Result) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	p("%s against %s (%s), %d clients", r.Scenario, r.Target, r.Transport, r.Clients)
	switch r.Scenario {
	case "echo":
		p(", %d in flight per client", r.InFlight)
	case "fanout":
		p(" in one room, %d messages in flight", r.InFlight)
	}
	p("\n  window     %.2f s after %.2f s of warm-up, from %s", r.Seconds, r.WarmupSeconds, r.Start.UTC().Format("2006-01-02 15:04:05 UTC"))
	if r.Interrupted {
		p(" (interrupted)")
	}
	p("\n")
	switch r.Scenario {
	case "idle":
		p("  open       %d connections at the end\n", r.Ops)
	default:
		p("  throughput %.0f %s/s (%d in the window)\n", r.OpsPerSecond, r.Unit, r.Ops)
		if r.Scenario == "fanout" {
			p("  messages   %.0f/s (%d in the window)\n", r.MessagesPerSecond, r.Messages)
		}
	}
	if r.Latency != nil && r.Latency.Count > 0 {
		name := "latency"
		if r.Scenario == "fanout" {
			name = "delivery"
		}
		writeSummary(out, name, r.Latency)
	}
	if r.SendLatency != nil && r.SendLatency.Count > 0 {
		writeSummary(out, "send", r.SendLatency)
	}
	t := r.Totals
	switch r.Scenario {
	case "echo":
		p("  totals     %d sent, %d answered", t.Sent, t.Received)
	case "fanout":
		p("  totals     %d sent, %d accepted, %d deliveries of %d expected", t.Sent, t.Received, t.Deliveries, t.Expected)
	case "idle":
		p("  totals     %d dropped", t.Dropped)
	}
	if r.Scenario != "idle" && t.Dropped > 0 {
		p(", %d connections dropped", t.Dropped)
	}
	p("\n")
	if len(r.Errors) == 0 {
		p("  errors     none\n")
	} else {
		kinds := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			p("  errors     %d %s", r.Errors[k], k)
			if s := r.ErrorSamples[k]; s != "" {
				p(" (first: %s)", s)
			}
			p("\n")
		}
	}
	for _, s := range r.Servers {
		p("  server     pid %d %-16s cpu %6.2f s (%5.1f%%)  rss %d kB (before the run %d kB)\n",
			s.PID, s.Name, s.CPUSeconds, s.CPUPercent, s.RSSKB, s.RSSBeforeKB)
	}
	p("  load tool  cpu %6.2f s (%5.1f%%)\n", r.ToolCPUSeconds, 100*r.ToolCPUSeconds/max(r.Seconds, 1e-9))
	if r.CPUPerOpUS > 0 {
		p("  cpu/op     %.1f us of server CPU per %s\n", r.CPUPerOpUS, r.Op)
	}
	if r.RSSPerConnKB != 0 {
		p("  rss/conn   %.1f kB per connection\n", r.RSSPerConnKB)
	}
}

func writeSummary(out io.Writer, name string, s *Summary) {
	ms := func(v float64) string {
		if v >= 1000 {
			return fmt.Sprintf("%.2f ms", v/1000)
		}
		return fmt.Sprintf("%.0f us", v)
	}
	fmt.Fprintf(out, "  %-10s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, %d samples)\n",
		name, ms(s.P50US), ms(s.P90US), ms(s.P99US), ms(s.P999US), ms(s.MaxUS), ms(s.MeanUS), s.Count)
	var top uint64
	for _, o := range s.Octaves {
		top = max(top, o.Count)
	}
	for _, o := range s.Octaves {
		bar := int(40 * o.Count / max(top, 1))
		if o.Count > 0 && bar == 0 {
			bar = 1
		}
		fmt.Fprintf(out, "  %10s <= %-8s %-40s %d\n", "", ms(o.UpToUS), strings.Repeat("#", bar), o.Count)
	}
}
