package pomelo_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// snippetMarker precedes a fenced code block in a Markdown file whose lines
// are excerpts of a test file of this package:
//
//	<!-- snippet: example_test.go -->
var snippetMarker = regexp.MustCompile(`^\s*<!-- snippet: ([A-Za-z0-9_./-]+) -->\s*$`)

// snippet is one marked code block.
type snippet struct {
	doc, source string
	line        int // of the marker, 1-based
	lines       []string
}

// snippetsOf returns the marked code blocks of the Markdown file at path.
func snippetsOf(t *testing.T, path string) []snippet {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []snippet
	var cur *snippet
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil:
			if m := snippetMarker.FindStringSubmatch(line); m != nil {
				cur = &snippet{doc: path, source: m[1], line: n}
			}
		case !inBlock:
			if !strings.HasPrefix(trimmed, "```") {
				t.Fatalf("%s:%d: a snippet marker must be followed by a code block", path, cur.line)
			}
			inBlock = true
		case strings.HasPrefix(trimmed, "```"):
			out = append(out, *cur)
			cur, inBlock = nil, false
		default:
			cur.lines = append(cur.lines, line)
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unterminated snippet", path, cur.line)
	}
	return out
}

// checkSnippet returns an error unless every line of s, but blank lines
// and "...", appears in its source file in the same order, leading and
// trailing blanks aside.
func checkSnippet(s snippet) error {
	b, err := os.ReadFile(s.source)
	if err != nil {
		return fmt.Errorf("%s:%d: %v", s.doc, s.line, err)
	}
	src := strings.Split(string(b), "\n")
	i := 0
	for _, l := range s.lines {
		want := strings.TrimSpace(l)
		if want == "" || want == "..." {
			continue
		}
		for i < len(src) && strings.TrimSpace(src[i]) != want {
			i++
		}
		if i == len(src) {
			return fmt.Errorf("%s:%d: snippet line %q is not in %s (in this order)", s.doc, s.line, want, s.source)
		}
		i++
	}
	return nil
}

// TestDocSnippetsMatchTheirSource keeps the code shown in README.md and
// docs/GUIDE.md true: each marked snippet is an excerpt of a test file that
// compiles and runs (the README's quick start is the App's Example).
func TestDocSnippetsMatchTheirSource(t *testing.T) {
	for _, doc := range []struct {
		path string
		// must name the sources the document has to show code of.
		must []string
	}{
		{"README.md", []string{"example_test.go"}},
		{filepath.Join("docs", "GUIDE.md"), []string{"guide_test.go"}},
	} {
		shown := map[string]bool{}
		for _, s := range snippetsOf(t, doc.path) {
			shown[s.source] = true
			if err := checkSnippet(s); err != nil {
				t.Error(err)
			}
		}
		for _, src := range doc.must {
			if !shown[src] {
				t.Errorf("%s shows no snippet of %s", doc.path, src)
			}
		}
	}
}

// TestCheckSnippetCatchesDrift guards the guard: a line the source does not
// have, or lines out of order, fail the check.
func TestCheckSnippetCatchesDrift(t *testing.T) {
	for name, lines := range map[string][]string{
		"missing line": {"func (hello) Echo(ctx context.Context) error {"},
		"out of order": {"defer cl.Close()", "defer c.Close()"},
	} {
		if checkSnippet(snippet{doc: "test", source: "example_test.go", lines: lines}) == nil {
			t.Errorf("%s: the check passed", name)
		}
	}
	ok := snippet{doc: "test", source: "example_test.go", lines: []string{"defer c.Close()", "...", "  defer cl.Close()"}}
	if err := checkSnippet(ok); err != nil {
		t.Errorf("an excerpt in order: %v", err)
	}
}
