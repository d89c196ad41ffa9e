package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const repoRoot = ".."

// TestGenFresh regenerates gen/ into a temporary directory with the
// go:generate commands of the root doc.go and compares it with the
// committed gen/. It needs the buf tool build, which takes minutes the
// first time.
func TestGenFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf generate")
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "doc.go"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate "); ok {
			cmds = append(cmds, strings.Fields(rest))
		}
	}
	if len(cmds) == 0 {
		t.Fatal("doc.go has no go:generate line")
	}
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	out := t.TempDir()
	for _, args := range cmds {
		if args[0] != "go" {
			t.Fatalf("doc.go's go:generate line %q does not run go", strings.Join(args, " "))
		}
		cmd := exec.CommandContext(ctx, "go", append(args[1:], "-o", out)...)
		cmd.Dir = repoRoot
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	want := readTree(t, filepath.Join(out, "gen"))
	got := readTree(t, filepath.Join(repoRoot, "gen"))
	var stale []string
	for _, name := range sortedKeys(want) {
		b, ok := got[name]
		switch {
		case !ok:
			stale = append(stale, "missing: gen/"+name)
		case !bytes.Equal(b, want[name]):
			stale = append(stale, "differs: gen/"+name)
		}
	}
	for _, name := range sortedKeys(got) {
		if _, ok := want[name]; !ok {
			stale = append(stale, "not generated (delete it): gen/"+name)
		}
	}
	if len(stale) > 0 {
		t.Fatalf("gen/ is stale: run go generate ./... from the repository root\n\t%s", strings.Join(stale, "\n\t"))
	}
}

// TestBootstrap checks that the plugin builds without gen/: it must not
// import generated code, nor the runtime (which may import generated code).
func TestBootstrap(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(b)) {
		if strings.HasPrefix(pkg, "github.com/pomelo-go/pomelo/gen/") || strings.HasPrefix(pkg, "github.com/pomelo-go/pomelo/runtime") {
			t.Errorf("protoc-gen-pomelo depends on %s: it must build from an empty gen/", pkg)
		}
	}
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
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

func sortedKeys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
