// Command pomelo is the pomelo-go command line.
//
//	pomelo new DIR --module PATH [--replace LOCALPATH] [--tidy=false]
//	pomelo bench echo|fanout|idle (--url URL | --gate URL) [flags]
//	pomelo servers (--cluster FILE | --etcd URL [--prefix P]) [--secret S]
//	pomelo kick UID [--reason R] (--cluster FILE | --etcd URL) [--secret S]
//	pomelo broadcast ROUTE JSON (--cluster FILE | --etcd URL) [--secret S]
//	pomelo client URL
//
// new creates a working project in DIR (which must not exist or be empty):
// a go.mod with protoc-gen-go and protoc-gen-pomelo as Go tools, buf pinned
// in a separate tools/go.mod, buf.yaml and buf.gen.yaml with local plugins
// only, the pomelo/v1/options.proto the protos import (vendored under
// third_party/ and excluded from generation), a sample proto with a
// HANDLER, a REMOTE and a PUSH service, a main.go that runs a frontend and
// a backend from cluster.json, a test and a README. --replace points the
// framework module at a local checkout. Unless --tidy=false, it then runs
// go mod tidy in both modules; then, in DIR, `go generate ./...`,
// `go test ./...` and `go run .` work.
//
// bench is a load tool for an application of the chat demo's contract (this
// project's example/chat, or a real Pomelo running the demo): echo round
// trips, fan-out to a room, or idle connections, over WebSocket or raw TCP,
// with a latency histogram, errors, and the CPU time and RSS of the server
// processes given with --pids; see internal/bench and docs/BENCHMARKS.md.
// `pomelo bench echo -h` lists its flags.
//
// servers, kick and broadcast are the admin commands of a running cluster
// (internal/admincli): they reach every server of the cluster file, or of
// etcd, over the cluster's own Connect transport with the cluster secret
// (--secret, else $POMELO_SECRET, else the file's). servers lists each
// server's id, type, addresses, state (up, down, unreachable) and a
// frontend's session counts; kick closes every session of a uid on every
// frontend; broadcast pushes a JSON body under a route to every session.
// client is a REPL of the client protocol: request ROUTE JSON, notify
// ROUTE JSON, quit; pushes are printed as they arrive; it reads piped
// input too and exits at its end.
package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/pomelo-go/pomelo/internal/admincli"
	pomelov1proto "github.com/pomelo-go/pomelo/proto/pomelo/v1"
)

//go:embed all:template
var templates embed.FS

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pomelo:", err)
		os.Exit(1)
	}
}

const usage = "usage: pomelo new DIR --module PATH [--replace LOCALPATH] [--tidy=false]\n       pomelo bench echo|fanout|idle (--url URL | --gate URL) [flags]\n" + admincli.Usage

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && admincli.IsCommand(args[0]) {
		return admincli.Run(context.Background(), args[0], args[1:], admincli.Env{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv})
	}
	if len(args) > 0 && args[0] == "bench" {
		return runBench(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "new" {
		return errors.New(usage)
	}
	fl := flag.NewFlagSet("pomelo new", flag.ContinueOnError)
	fl.SetOutput(stderr)
	module := fl.String("module", "", "the new module's path (required)")
	replace := fl.String("replace", "", "a local checkout of github.com/pomelo-go/pomelo to use")
	tidy := fl.Bool("tidy", true, "run go mod tidy in the new modules")
	// The directory may come before or after the flags.
	rest := args[1:]
	var dir string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		dir, rest = rest[0], rest[1:]
	}
	if err := fl.Parse(rest); err != nil {
		return err
	}
	if dir == "" && fl.NArg() == 1 {
		dir = fl.Arg(0)
	} else if fl.NArg() != 0 {
		return errors.New(usage)
	}
	if dir == "" || *module == "" {
		return errors.New(usage)
	}
	if *replace != "" {
		abs, err := filepath.Abs(*replace)
		if err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
			return fmt.Errorf("--replace %s: not a module: %w", *replace, err)
		}
		*replace = abs
	}
	if err := create(dir, *module, *replace); err != nil {
		return err
	}
	if *tidy {
		for _, d := range []string{dir, filepath.Join(dir, "tools")} {
			// -e: gen/ is not generated yet.
			cmd := exec.Command("go", "mod", "tidy", "-e")
			cmd.Dir, cmd.Stdout, cmd.Stderr = d, stdout, stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("go mod tidy in %s: %w", d, err)
			}
		}
	}
	fmt.Fprintf(stdout, "created %s (module %s); next: cd %s && go generate ./... && go run .\n", dir, *module, dir)
	return nil
}

// project is what the templates see.
type project struct {
	// Module is the module path.
	Module string
	// Name is its last element.
	Name string
	// Replace is the local checkout of the framework, or "".
	Replace string
	// Version is the framework version required.
	Version string
}

// create writes the project into dir, which must not exist or be empty.
func create(dir, module, replace string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	p := project{Module: module, Name: path.Base(module), Replace: replace, Version: "v0.0.0-00010101000000-000000000000"}
	files := map[string][]byte{"third_party/pomelo/v1/options.proto": pomelov1proto.OptionsProto}
	err := fs.WalkDir(templates, "template", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		text, err := templates.ReadFile(name)
		if err != nil {
			return err
		}
		t, err := template.New(name).Parse(string(text))
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := t.Execute(&out, p); err != nil {
			return err
		}
		files[strings.TrimSuffix(strings.TrimPrefix(name, "template/"), ".tmpl")] = out.Bytes()
		return nil
	})
	if err != nil {
		return err
	}
	for name, body := range files {
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, body, 0o644); err != nil {
			return err
		}
	}
	return nil
}
