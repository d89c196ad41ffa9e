package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGenFresh regenerates gen/ into a temporary directory with the
// command of doc.go's go:generate line and compares it with the committed
// gen/. It builds the buf tool, which takes minutes the first time.
func TestGenFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf generate")
	}
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate "); ok {
			args = strings.Fields(rest)
		}
	}
	if len(args) == 0 || args[0] != "go" {
		t.Fatalf("doc.go has no go:generate line running go")
	}
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	out := t.TempDir()
	cmd := exec.CommandContext(ctx, "go", append(args[1:], "-o", out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
	}
	want := readTree(t, filepath.Join(out, "example", "chat", "gen"))
	got := readTree(t, "gen")
	var stale []string
	for name, b := range want {
		if g, ok := got[name]; !ok {
			stale = append(stale, "missing: gen/"+name)
		} else if !bytes.Equal(g, b) {
			stale = append(stale, "differs: gen/"+name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			stale = append(stale, "not generated (delete it): gen/"+name)
		}
	}
	if len(want) == 0 {
		t.Fatal("buf generated nothing")
	}
	slices.Sort(stale)
	if len(stale) > 0 {
		t.Fatalf("example/chat/gen is stale: run go generate ./... from the repository root\n\t%s", strings.Join(stale, "\n\t"))
	}
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
