package testkit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LogBuffer keeps what a logger logs in memory, one JSON object per record,
// for tests that check what a server logs. It is safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Logger returns a logger that writes every record, debug level included,
// to b.
func (b *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Records returns the records logged so far, decoded.
func (b *LogBuffer) Records() []map[string]any {
	var out []map[string]any
	for _, line := range b.lines() {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// Count returns how many records hold s in their encoded form (message,
// keys or values).
func (b *LogBuffer) Count(s string) int {
	n := 0
	for _, line := range b.lines() {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// Matching returns the records with a string value that holds s.
func (b *LogBuffer) Matching(s string) []map[string]any {
	var out []map[string]any
	for _, r := range b.Records() {
		for _, v := range r {
			if str, ok := v.(string); ok && strings.Contains(str, s) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// Wait waits until at least n records hold s, for at most five seconds (a
// server may log a failure after it answered it), and returns how many do.
func (b *LogBuffer) Wait(s string, n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for b.Count(s) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return b.Count(s)
}

func (b *LogBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimRight(b.buf.String(), "\n"), "\n")
}
