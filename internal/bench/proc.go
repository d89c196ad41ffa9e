package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of the CPU times in /proc/PID/stat (USER_HZ),
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is one reading of a process.
type procSample struct {
	pid   int
	comm  string
	cpu   time.Duration // user + system
	rssKB int64
}

// readProc reads the CPU time (/proc/PID/stat) and resident set size
// (/proc/PID/status) of a process.
func readProc(pid int) (procSample, error) {
	s := procSample{pid: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("server pid %d: %w", pid, err)
	}
	// The command name is in parentheses and may hold spaces.
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return s, fmt.Errorf("server pid %d: cannot parse /proc/%d/stat", pid, pid)
	}
	s.comm = string(stat[open+1 : end])
	// After ")": state (field 3), ..., utime (14), stime (15).
	f := strings.Fields(string(stat[end+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("server pid %d: short /proc/%d/stat", pid, pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("server pid %d: cannot parse the CPU times in /proc/%d/stat", pid, pid)
	}
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("server pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb := strings.TrimSuffix(strings.TrimSpace(rest), " kB")
			s.rssKB, _ = strconv.ParseInt(strings.TrimSpace(kb), 10, 64)
		}
	}
	return s, nil
}

// readProcs reads every pid.
func readProcs(pids []int) ([]procSample, error) {
	out := make([]procSample, 0, len(pids))
	for _, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// ServerStats is what a run measured of one server process.
type ServerStats struct {
	// PID and Name (the command name) identify the process.
	PID  int    `json:"pid"`
	Name string `json:"name"`
	// CPUSeconds is the CPU time (user and system) it used during the
	// measured window; CPUPercent is that per wall-clock second, x100.
	CPUSeconds float64 `json:"cpuSeconds"`
	CPUPercent float64 `json:"cpuPercent"`
	// RSSKB is its resident set size at the end of the window;
	// RSSBeforeKB at the start of the run (before any connection).
	RSSKB       int64 `json:"rssKB"`
	RSSBeforeKB int64 `json:"rssBeforeKB"`
}

// serverStats combines the readings before the run, at the start and at
// the end of the measured window.
func serverStats(before, start, end []procSample, window time.Duration) []ServerStats {
	out := make([]ServerStats, len(end))
	for i := range end {
		cpu := end[i].cpu - start[i].cpu
		out[i] = ServerStats{
			PID:         end[i].pid,
			Name:        end[i].comm,
			CPUSeconds:  cpu.Seconds(),
			CPUPercent:  100 * cpu.Seconds() / window.Seconds(),
			RSSKB:       end[i].rssKB,
			RSSBeforeKB: before[i].rssKB,
		}
	}
	return out
}
