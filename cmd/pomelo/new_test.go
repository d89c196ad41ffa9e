package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/runtime/client"
)

func TestNewRefusesBadArguments(t *testing.T) {
	var out bytes.Buffer
	for _, args := range [][]string{
		nil,
		{"init"},
		{"new"},
		{"new", t.TempDir()},
		{"new", "--module", "example.com/x"},
		{"new", t.TempDir(), "--module", "example.com/x", "--replace", t.TempDir()},
	} {
		if err := run(args, &out, &out); err == nil {
			t.Errorf("pomelo %v succeeded", args)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keep"), nil, 0o644)
	if err := run([]string{"new", dir, "--module", "example.com/x", "--tidy=false"}, &out, &out); err == nil {
		t.Error("pomelo new into a non-empty directory succeeded")
	}
}

func TestNewVendorsOptionsProtoAndReplace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	root, _ := filepath.Abs("../..")
	var out bytes.Buffer
	if err := run([]string{"new", dir, "--module", "example.com/game", "--replace", root, "--tidy=false"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	vendored, err := os.ReadFile(filepath.Join(dir, "third_party/pomelo/v1/options.proto"))
	if err != nil {
		t.Fatal(err)
	}
	original, _ := os.ReadFile(filepath.Join(root, "proto/pomelo/v1/options.proto"))
	if !bytes.Equal(vendored, original) {
		t.Error("the vendored options.proto differs from proto/pomelo/v1/options.proto")
	}
	mod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if !strings.Contains(string(mod), "module example.com/game\n") || !strings.Contains(string(mod), "=> "+root) {
		t.Errorf("go.mod:\n%s", mod)
	}
	for _, f := range []string{"buf.yaml", "buf.gen.yaml", "tools/go.mod", "main.go", "main_test.go", "README.md", "cluster.json", "proto/app/v1/app.proto"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || strings.Contains(string(b), "{{") || strings.Contains(string(b), "../shared") {
			t.Errorf("%s: %v", f, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "buf.gen.yaml")); strings.Contains(string(b), "remote:") || strings.Contains(string(b), "buf.build") {
		t.Errorf("buf.gen.yaml uses a registry:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "buf.gen.yaml")); strings.Contains(string(b), "protoc-gen-connect-go") {
		t.Errorf("buf.gen.yaml runs protoc-gen-connect-go: protoc-gen-pomelo writes the one API of the project's services\n%s", b)
	}
}

// TestNewProjectGeneratesTestsAndServes is the acceptance test of
// `pomelo new`: the project it makes generates, vets, tests, and runs a
// frontend that answers a Go client.
func TestNewProjectGeneratesTestsAndServes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a new project and buf (minutes on a cold cache)")
	}
	dir := filepath.Join(t.TempDir(), "mygame")
	root, _ := filepath.Abs("../..")
	var out bytes.Buffer
	if err := run([]string{"new", dir, "--module", "example.com/mygame", "--replace", root}, &out, &out); err != nil {
		t.Fatalf("pomelo new: %v\n%s", err, out.String())
	}
	env := append(os.Environ(), "GOFLAGS=-mod=mod")
	gocmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = dir, env
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	gocmd("generate", "./...")
	var generated []string
	filepath.WalkDir(filepath.Join(dir, "gen"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			generated = append(generated, filepath.Base(path))
		}
		return err
	})
	if strings.Join(generated, " ") != "app.pb.go app.pomelo.go" {
		t.Errorf("go generate wrote %v, want one API: app.pb.go app.pomelo.go", generated)
	}
	gocmd("vet", "./...")
	gocmd("test", "-count=1", "./...")
	// go run ., with the binary built first so that the test can stop it
	// with an interrupt, on ports that were free a moment ago.
	gocmd("build", "-o", "mygame", ".")
	ports := make([]int, 3)
	lns := make([]net.Listener, len(ports))
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], ports[i] = ln, ln.Addr().(*net.TCPAddr).Port
	}
	p := strconv.Itoa
	file := filepath.Join(dir, "test-cluster.json")
	os.WriteFile(file, []byte(`{"secret": "t", "servers": [
 {"id": "connector-1", "type": "connector", "host": "127.0.0.1", "rpcPort": `+p(ports[0])+`, "frontend": true, "wsPort": `+p(ports[1])+`},
 {"id": "game-1", "type": "game", "host": "127.0.0.1", "rpcPort": `+p(ports[2])+`}]}`), 0o644)
	var logs bytes.Buffer
	srv := exec.Command(filepath.Join(dir, "mygame"), "-cluster", file)
	srv.Dir, srv.Stdout, srv.Stderr = dir, &logs, &logs
	// Free the ports just before the servers take them.
	for _, ln := range lns {
		ln.Close()
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			srv.Process.Kill()
			<-exited
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cl *client.Client
	for {
		var err error
		if cl, err = client.Dial(ctx, "ws://127.0.0.1:"+p(ports[1])+"/"); err == nil {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("the server exited: %v\n%s", err, logs.String())
		case <-ctx.Done():
			t.Fatalf("the frontend never answered: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	body, isErr, err := cl.RequestRaw(ctx, "game.gameHandler.hello", []byte(`{"name":"zoe"}`))
	cl.Close()
	if err != nil || isErr || !strings.Contains(string(body), `hello, zoe`) {
		t.Fatalf("hello: %s, error response %v, %v", body, isErr, err)
	}
	srv.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("the server after an interrupt: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the server did not stop on an interrupt\n%s", logs.String())
	}
}
