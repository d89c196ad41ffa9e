package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// badRoute is a client route holding invalid UTF-8, which protobuf cannot
// carry on the forward stream.
// errNickTaken is an application-defined named error.
var errNickTaken = runtime.DefineError(runtime.CodeFrameworkError, "NICK_TAKEN")

const badRoute = "chat.\xff\xfe.echo"

// startEcho starts a frontend and a chat backend serving chat.h.echo (and
// chat.h.nick, which answers the session's "nick" setting, and chat.h.taken,
// which fails with a message of invalid UTF-8). The frontend
// has a global filter that plays a buggy or hostile application:
// chat.h.rewrite is rewritten to badRoute after the connector validated it,
// and chat.h.nick gets a nick of invalid UTF-8, so that both reach the
// forwarder.
func startEcho(t *testing.T) *clustertest.Cluster {
	return clustertest.Start(t, clustertest.Options{
		Servers: []clustertest.Spec{{Type: "connector", Frontend: true}, {Type: "chat"}},
		Setup: func(m *clustertest.Member) error {
			if m.Info.Type == "connector" {
				m.Server.GlobalFilter(runtime.FilterFuncs{BeforeFunc: func(ctx context.Context, r *runtime.Request) (context.Context, error) {
					switch r.Route {
					case "chat.h.rewrite":
						r.Route = badRoute
					case "chat.h.nick":
						r.Session.Set("nick", "ann\xff")
					}
					return ctx, nil
				}})
				return nil
			}
			testkit.HandleStruct(t, m.Server, "chat.h.echo", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				return in, nil
			})
			testkit.HandleStruct(t, m.Server, "chat.h.taken", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				return nil, runtime.Errorf(errNickTaken, "nick %s is taken", "ann\xff")
			})
			testkit.HandleStruct(t, m.Server, "chat.h.nick", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
				nick, _ := s.Get("nick")
				return testkit.Struct(map[string]any{"nick": nick}), nil
			})
			return nil
		},
	})
}

// errName returns the stable name of a request's error ("" for none).
func errName(err error) string {
	if err == nil {
		return ""
	}
	return runtime.AsError(err).Name
}

// A regression test: a request or notify whose route is invalid UTF-8
// broke the shared forward stream, and every request on it, other users'
// included, failed UNAVAILABLE. Now the hostile request alone is answered
// BAD_REQUEST, its notifies are dropped, its connection stays open, and the
// well-behaved clients see no error.
func TestBadRouteFailsOnlyItsOwnRequest(t *testing.T) {
	cc := startEcho(t)
	fe := cc.Members("connector")[0]
	hostile := dial(t, fe)
	const good, rounds = 8, 40
	var wg sync.WaitGroup
	var (
		mu       sync.Mutex
		goodErrs int
		firstErr error
	)
	for i := range good {
		c := dial(t, fe)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rounds {
				out, err := tryCall(c, "chat.h.echo", map[string]any{"n": fmt.Sprint(i, j)})
				if err == nil && str(out, "n") != fmt.Sprint(i, j) {
					err = fmt.Errorf("echo answered %v", out)
				}
				if err != nil {
					mu.Lock()
					if goodErrs++; firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range rounds {
		if err := hostile.Notify(ctx, badRoute, testkit.Struct(nil)); err != nil {
			t.Fatalf("hostile notify: %v", err)
		}
		for _, route := range []string{badRoute, "chat.h.rewrite"} {
			_, err := tryCall(hostile, route, nil)
			if errName(err) != runtime.ErrBadRequest.Name {
				t.Fatalf("%q answered %v, want BAD_REQUEST", route, err)
			}
			if e := runtime.AsError(err); e.Message != "malformed route" {
				t.Fatalf("%q answered the message %q", route, e.Message)
			}
		}
	}
	wg.Wait()
	if goodErrs > 0 {
		t.Fatalf("well-behaved clients got %d errors, the first: %v", goodErrs, firstErr)
	}
	// The hostile client's connection is still usable.
	if out := call(t, hostile, "chat.h.echo", map[string]any{"n": "still here"}); str(out, "n") != "still here" {
		t.Fatalf("hostile client's echo answered %v", out)
	}
}

// A session whose settings (or uid) hold invalid UTF-8, such as a nick
// taken from client input, is forwarded with each invalid run replaced by
// U+FFFD rather than breaking the forward stream.
func TestInvalidUTF8InForwardedSessionIsReplaced(t *testing.T) {
	for _, mode := range []node.ForwardMode{node.ForwardStream, node.ForwardUnary} {
		cc := startEcho(t)
		fe := cc.Members("connector")[0]
		fe.Node.SetForwardMode(mode)
		c, other := dial(t, fe), dial(t, fe)
		for range 5 {
			if got := str(call(t, c, "chat.h.nick", nil), "nick"); got != "ann\uFFFD" {
				t.Fatalf("mode %d: backend saw the nick %q, want %q", mode, got, "ann\uFFFD")
			}
			call(t, other, "chat.h.echo", map[string]any{"n": "x"})
		}
	}
}

// A backend's response that cannot be encoded (an error message holding
// invalid UTF-8) fails only itself: its invalid runs are replaced by U+FFFD
// and the response stream goes on serving everyone.
func TestUnencodableResponseFailsOnlyItself(t *testing.T) {
	cc := startEcho(t)
	fe := cc.Members("connector")[0]
	c, other := dial(t, fe), dial(t, fe)
	for range 5 {
		_, err := tryCall(c, "chat.h.taken", nil)
		if e := runtime.AsError(err); e.Name != "NICK_TAKEN" || e.Message != "nick ann\uFFFD is taken" {
			t.Fatalf("chat.h.taken answered %v, want NICK_TAKEN with the message repaired", err)
		}
		call(t, other, "chat.h.echo", map[string]any{"n": "x"})
	}
}
