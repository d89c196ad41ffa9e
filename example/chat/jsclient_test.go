package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/example/chat/app"
)

// TestJSClientModule runs the project's JavaScript client, the package in
// clients/js (the module the page is served), under node against the
// example: its codec, the gate flow, enter,
// echo, an error response, notify and pushes, the kick of a relogin, the
// close, and a handshake refused for an old client version.
func TestJSClientModule(t *testing.T) {
	node, _ := stockClient(t) // node and the ws package, installed for the interop tests
	modules, err := filepath.Abs(filepath.Join(nodeModules))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scenario   string
		minVersion string
	}{
		{"session", ""},
		{"refused", "0.2.0"},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			a := startApp(t, app.Options{MinClientVersion: tc.minVersion})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "testdata/jsclient.mjs", modules, wsURL(a.Server("gate-1").Info()), tc.scenario)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			var last struct {
				Event   string `json:"event"`
				Message string `json:"message"`
			}
			checks := 0
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if json.Unmarshal(sc.Bytes(), &last) == nil && last.Event == "ok" {
					checks++
				}
			}
			if err != nil || last.Event != "done" {
				t.Fatalf("jsclient.mjs %s: %v, last event %+v\nstdout:\n%s\nstderr:\n%s", tc.scenario, err, last, out, stderr.String())
			}
			if checks == 0 {
				t.Fatalf("jsclient.mjs %s checked nothing:\n%s", tc.scenario, out)
			}
		})
	}
}
