package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example refuses to start on the committed secret with a server off
// loopback; -secret and POMELO_SECRET replace it (the run then gets past
// the check and fails only to bind the unreachable test address).
func TestSecretFlagAndEnvReplaceTheCommittedSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.json")
	file := `{"secret": "example-secret-change-me", "servers": [{"id": "chat-1", "type": "chat", "host": "192.0.2.1", "rpcPort": 4020}]}`
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-cluster", path, "-web", "off"}
	if err := run(args); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("committed secret off loopback: err = %v, want a refusal about the secret", err)
	}
	if err := run(append(args, "-secret", "flag-secret")); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("with -secret: err = %v, want only a listen error", err)
	}
	t.Setenv("POMELO_SECRET", "env-secret")
	if err := run(args); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("with POMELO_SECRET: err = %v, want only a listen error", err)
	}
}
