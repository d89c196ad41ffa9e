package js_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo"
	"github.com/pomelo-go/pomelo/internal/cutproxy"
	"github.com/pomelo-go/pomelo/internal/testenv"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/session"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// testDir is the node package that installs pomelo-go-client as a user's
// project does (a packed copy, see its .npmrc) and drives it.
const testDir = "test"

var errNotAllowed = pomelo.DefineError(403, "NOT_ALLOWED")

func init() {
	// Push routes in the route dictionary travel compressed.
	runtime.RegisterRoutes(
		runtime.RouteInfo{Route: "onPush", Kind: runtime.RoutePush, Response: "google.protobuf.Struct"},
		runtime.RouteInfo{Route: "onNotify", Kind: runtime.RoutePush, Response: "google.protobuf.Struct"},
	)
}

// installedClient returns node, or skips (fails under POMELO_TEST_REQUIRE)
// when node or the test package's node_modules are missing. An installed
// copy that differs from the source fails the test: it would test old code.
func installedClient(t *testing.T) string {
	t.Helper()
	node := testenv.LookPath(t, "node", "node")
	install := "run `npm install --no-package-lock --prefix clients/js/test` from the repository root"
	for _, f := range []string{"ws/package.json", "typescript/bin/tsc", "pomelo-go-client/package.json"} {
		if _, err := os.Stat(filepath.Join(testDir, "node_modules", f)); err != nil {
			testenv.Missing(t, "node", "clients/js/test/node_modules/"+f+" is missing: "+install)
		}
	}
	for _, f := range []string{"package.json", "pomelo-client.js", "index.d.ts"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(testDir, "node_modules", "pomelo-go-client", f))
		if err != nil || !bytes.Equal(got, src) {
			// npm keeps a copy it installed from a path: remove it first.
			t.Fatalf("clients/js/test/node_modules/pomelo-go-client/%s is not the current %s: run `rm -r clients/js/test/node_modules/pomelo-go-client && npm install --no-package-lock --prefix clients/js/test` from the repository root", f, f)
		}
	}
	return node
}

// server is a connector and a room server; the room's routes are forwarded.
type server struct {
	url       string
	mu        sync.Mutex
	types     []string // the handshakes' sys.type values
	notes     []string // texts of the notifies run
	closed    int      // sessions closed on the frontend
	unblocked chan struct{}
	cut       chan struct{} // closed by the first cut of resumeControl
	cutOnce   sync.Once
	closes    chan struct{} // one value per closed session
}

func (s *server) clientTypes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.types...)
}

// startServer starts the server; configure, when not nil, adjusts each
// server's configuration.
func startServer(t *testing.T, configure func(*pomelo.Config)) *server {
	srv := &server{unblocked: make(chan struct{}), cut: make(chan struct{}), closes: make(chan struct{}, 100)}
	c := testkit.Start(t, testkit.Config{
		Servers: []testkit.Spec{{Type: "connector", Frontend: true}, {Type: "room"}},
		Configure: func(cfg *pomelo.Config) {
			cfg.CheckClient = func(clientType, version string) bool {
				srv.mu.Lock()
				srv.types = append(srv.types, clientType)
				srv.mu.Unlock()
				return version != "0.0.1"
			}
			cfg.HandshakeHook = func(ctx context.Context, s *session.Session, user json.RawMessage) (json.RawMessage, error) {
				return user, nil
			}
			if configure != nil {
				configure(cfg)
			}
		},
		Setup: func(m *testkit.Member) error {
			handle := func(route string, fn testkit.StructHandler) { testkit.HandleStruct(t, m.App, route, fn) }
			switch m.Info.Type {
			case "connector":
				m.App.Sessions().OnClosed(func(*session.Session, string) {
					srv.mu.Lock()
					srv.closed++
					srv.mu.Unlock()
					select {
					case srv.closes <- struct{}{}:
					default: // nobody waits for that many
					}
				})
				handle("connector.entry.login", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					uid := in.Fields["uid"].GetStringValue()
					if err := s.Bind(ctx, uid); err != nil {
						return nil, err
					}
					return testkit.Struct(map[string]any{"uid": uid}), nil
				})
				handle("connector.entry.note", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					srv.mu.Lock()
					srv.notes = append(srv.notes, in.Fields["text"].GetStringValue())
					srv.mu.Unlock()
					return nil, s.Send(ctx, "onNotify", in)
				})
				handle("connector.entry.kickMe", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return nil, s.Kick(ctx, in.Fields["reason"].GetStringValue())
				})
			case "room":
				handle("room.h.echo", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return in, nil
				})
				handle("room.h.fail", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					return nil, pomelo.Errorf(errNotAllowed, "not for %s", s.UID())
				})
				handle("room.h.push", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					if err := s.Send(ctx, "onPush", in); err != nil {
						return nil, err
					}
					return testkit.Struct(map[string]any{"pushed": true}), nil
				})
				// stream pushes onPush {i} for i from 0 to n-1, waiting for
				// the cut of resumeControl halfway.
				handle("room.h.stream", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					n := int(in.Fields["n"].GetNumberValue())
					for i := 0; i < n; i++ {
						if i == n/2 {
							select {
							case <-srv.cut:
							case <-ctx.Done():
								return nil, ctx.Err()
							}
						}
						if err := s.Send(ctx, "onPush", testkit.Struct(map[string]any{"i": i})); err != nil {
							return nil, err
						}
					}
					return testkit.Struct(map[string]any{"streamed": n}), nil
				})
				handle("room.h.hang", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
					select {
					case <-ctx.Done():
					case <-srv.unblocked:
					}
					return nil, nil
				})
			}
			return nil
		},
	})
	t.Cleanup(func() { close(srv.unblocked) }) // before the cluster stops
	srv.url = c.Members("connector")[0].WSURL()
	return srv
}

// runClient runs `node script url args...` in the test package and
// returns the checks it passed; it fails the test unless the script ends
// with "done".
func runClient(t *testing.T, node, script, url string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script, url}, args...)...)
	cmd.Dir = testDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var checks []string
	var last struct {
		Event   string `json:"event"`
		What    string `json:"what"`
		Message string `json:"message"`
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &last) == nil && last.Event == "ok" {
			checks = append(checks, last.What)
		}
	}
	if err != nil || last.Event != "done" {
		t.Fatalf("%s %q: %v, last event %+v\nstdout:\n%s\nstderr:\n%s", script, args, err, last, out, stderr.String())
	}
	return checks
}

// TestInstalledPackageUnderNode installs nothing itself: it runs the
// package as installed in clients/js/test/node_modules, a default
// (CommonJS) node package, imported by name from an .mjs script and from
// CommonJS, under node (20 has no global WebSocket, so the client imports
// ws):
// handshake, requests on the frontend and forwarded, error bodies with
// their stable names, pushes from a request and from a notify, the kick,
// and the client's own errors (TIMEOUT, CLOSED, OLD_CLIENT, ...).
func TestInstalledPackageUnderNode(t *testing.T) {
	node := installedClient(t)
	srv := startServer(t, nil)
	for _, tc := range []struct {
		scenario string
		want     []string // checks that must have passed, among others
	}{
		{"session", []string{"handshake", "forwarded echo", "named error: code, stable name, message", "push body and route", "notify runs its handler, which pushes", "kick event with the reason", "close event after the kick"}},
		{"option", []string{"connected through the WebSocket option", "no answer rejects TIMEOUT", "pending request rejects CLOSED on disconnect"}},
		{"refused", []string{"old client refused: OLD_CLIENT 501", "no server: CONNECT_FAILED"}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			checks := runClient(t, node, "client.mjs", srv.url, tc.scenario)
			for _, w := range tc.want {
				found := false
				for _, c := range checks {
					found = found || c == w
				}
				if !found {
					t.Errorf("check %q did not run; ran %q", w, checks)
				}
			}
		})
	}
	t.Run("commonjs", func(t *testing.T) {
		if checks := runClient(t, node, "commonjs.cjs", srv.url); len(checks) != 1 {
			t.Errorf("commonjs.cjs checks %q", checks)
		}
	})
	// What the server saw of the clients.
	if types := srv.clientTypes(); !strings.Contains(strings.Join(types, ","), "pomelo-go-js-test") || !strings.Contains(strings.Join(types, ","), "pomelo-go-js") {
		t.Errorf("handshake client types %q: want the session's pomelo-go-js-test and the default pomelo-go-js", types)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.notes) != 1 || srv.notes[0] != "via notify" {
		t.Errorf("notifies run: %q", srv.notes)
	}
}

// TestTypeDeclarationsAcceptTheAPIAndRejectMisuse type-checks
// test/types.mts with tsc against the installed package's index.d.ts: every
// documented use compiles, and each use marked @ts-expect-error is an error.
func TestTypeDeclarationsAcceptTheAPIAndRejectMisuse(t *testing.T) {
	node := installedClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", ".")
	cmd.Dir = testDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc -p clients/js/test: %v\n%s", err, out)
	}
}

// TestResumeModeAgainstAFakeFrontend runs test/resume.mjs: the installed
// package's resume mode (docs/PROTOCOL.md, section 10) against the small
// frontend of test/fakeserver.mjs, under node: sys.resume on the first
// handshake and {token, received} on reconnects, the DATA count across
// connections, every push once and in order after a drop, the requests not
// answered sent again with their ids (and run once), ids counting across
// connections, resumed:false and giving up reported as lost with the
// pending requests failed SESSION_LOST, backoff with jitter, code 4000 on
// a heartbeat timeout and 1000 on disconnect, and no change without the
// option.
func TestResumeModeAgainstAFakeFrontend(t *testing.T) {
	node := installedClient(t)
	for _, scenario := range []string{"stock", "resume", "notresumed", "gaveup", "heartbeat", "notresumable", "kick"} {
		t.Run(scenario, func(t *testing.T) {
			if checks := runClient(t, node, "resume.mjs", scenario); len(checks) == 0 {
				t.Errorf("resume.mjs %s checked nothing", scenario)
			}
		})
	}
}

// resumeControl serves the control paths of test/frontend.mjs for srv and
// proxy, the client's way to the frontend.
func resumeControl(t *testing.T, srv *server, proxy *cutproxy.Proxy) string {
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/cut", func(w http.ResponseWriter, r *http.Request) {
		n := proxy.Cut()
		srv.cutOnce.Do(func() { close(srv.cut) })
		reply(w, map[string]int{"cut": n})
	})
	mux.HandleFunc("/refuse", func(w http.ResponseWriter, r *http.Request) {
		proxy.Refuse(true)
		reply(w, map[string]bool{"refusing": true})
	})
	mux.HandleFunc("/accept", func(w http.ResponseWriter, r *http.Request) {
		proxy.Refuse(false)
		reply(w, map[string]bool{"refusing": false})
	})
	mux.HandleFunc("/wait-closed", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-srv.closes:
			reply(w, map[string]bool{"closed": true})
		case <-time.After(20 * time.Second):
			http.Error(w, "no session closed on the frontend", http.StatusGatewayTimeout)
		}
	})
	mux.HandleFunc("/closed", func(w http.ResponseWriter, r *http.Request) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		reply(w, map[string]int{"closed": srv.closed})
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestResumeAgainstAFrontend runs test/frontend.mjs: the installed
// package's resume mode against a real frontend, reached through a TCP
// proxy that cuts the connection. In the middle of a stream of pushes and
// with requests in flight, the client resumes: every push once and in
// order, every response once, the session (its uid) kept and never closed
// on the frontend, and closed at once by disconnect. Away longer than the
// grace window, the client is told resumed:false and reports the session
// lost.
func TestResumeAgainstAFrontend(t *testing.T) {
	node := installedClient(t)
	for _, tc := range []struct {
		scenario string
		window   time.Duration
	}{
		{"stream", 0},
		{"window", 300 * time.Millisecond},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			srv := startServer(t, func(cfg *pomelo.Config) { cfg.Connector.ResumeWindow = tc.window })
			u, err := url.Parse(srv.url)
			if err != nil {
				t.Fatal(err)
			}
			proxy, err := cutproxy.New(u.Host)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })
			if checks := runClient(t, node, "frontend.mjs", "ws://"+proxy.Addr()+u.Path, tc.scenario, resumeControl(t, srv, proxy)); len(checks) == 0 {
				t.Errorf("frontend.mjs %s checked nothing", tc.scenario)
			}
		})
	}
}
