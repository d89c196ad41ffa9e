package online_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pomelo-go/pomelo/internal/clustertest"
	"github.com/pomelo-go/pomelo/internal/testservers"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/online"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// env is a test cluster (2 connectors, 1 chat backend unless told) whose
// servers each have an online service on the shared Redis, under a prefix
// of the test's own.
type env struct {
	*clustertest.Cluster
	rdb    *redis.Client
	prefix string

	mu sync.Mutex
	on map[string]*online.Service
}

func newRedis(t testing.TB) *redis.Client {
	r := testservers.SharedRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func start(t *testing.T, cfg online.Config, specs ...clustertest.Spec) *env {
	t.Helper()
	if len(specs) == 0 {
		specs = []clustertest.Spec{{Type: "connector", Count: 2, Frontend: true}, {Type: "chat"}}
	}
	e := &env{rdb: newRedis(t), prefix: testservers.Prefix(t), on: map[string]*online.Service{}}
	cfg.Prefix = e.prefix
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	// Registered before the cluster's own cleanup, so it runs after it:
	// the services close after their nodes, as in production.
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, on := range e.on {
			if err := on.Close(); err != nil {
				t.Errorf("online close: %v", err)
			}
		}
	})
	e.Cluster = clustertest.Start(t, clustertest.Options{
		Servers: specs,
		Setup: func(m *clustertest.Member) error {
			on := online.New(e.rdb, cfg)
			e.mu.Lock()
			e.on[m.Info.ID] = on
			e.mu.Unlock()
			setupHandlers(t, m, on)
			return on.Attach(m.Node)
		},
	})
	return e
}

// online returns the online service of server id.
func (e *env) online(id string) *online.Service {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.on[id]
}

// setupHandlers registers test routes: on frontends "connector.entry.*",
// on backends "<type>.h.*".
func setupHandlers(t testing.TB, m *clustertest.Member, on *online.Service) {
	prefix := m.Info.Type + ".h."
	if m.Info.Type == "connector" {
		prefix = "connector.entry."
	}
	handle(t, m.Server, prefix+"login", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		if err := on.Login(ctx, s, str(in, "uid")); err != nil {
			return nil, err
		}
		return obj(map[string]any{"server": m.Info.ID, "frontend": s.FrontendID()}), nil
	})
	handle(t, m.Server, prefix+"bind", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		return obj(map[string]any{}), s.Bind(ctx, str(in, "uid"))
	})
	handle(t, m.Server, prefix+"unbind", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		return obj(map[string]any{}), s.Unbind(ctx)
	})
	handle(t, m.Server, prefix+"push", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		var uids []string
		for _, v := range in.Fields["uids"].GetListValue().GetValues() {
			uids = append(uids, v.GetStringValue())
		}
		failed, err := m.Node.PushToUIDs(ctx, "onNote", obj(map[string]any{"text": str(in, "text")}), uids)
		if err != nil {
			return nil, err
		}
		var f []any
		for _, u := range failed {
			f = append(f, u)
		}
		return obj(map[string]any{"failed": f}), nil
	})
	handle(t, m.Server, prefix+"kick", func(ctx context.Context, s runtime.Session, in *structpb.Struct) (*structpb.Struct, error) {
		n, err := on.Kick(ctx, str(in, "uid"), "bye")
		return obj(map[string]any{"kicked": float64(n)}), err
	})
}

// handle registers a free-form JSON route on a test server.
var handle = testkit.HandleStruct

// obj builds a free-form JSON object.
var obj = testkit.Struct

func str(s *structpb.Struct, k string) string { return s.Fields[k].GetStringValue() }

func dial(t testing.TB, m *clustertest.Member) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, m.WSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tryCall(c *client.Client, route string, in map[string]any) (*structpb.Struct, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := &structpb.Struct{}
	err := c.Request(ctx, route, obj(in), out)
	return out, err
}

func call(t testing.TB, c *client.Client, route string, in map[string]any) *structpb.Struct {
	t.Helper()
	out, err := tryCall(c, route, in)
	if err != nil {
		t.Fatalf("%s: %v", route, err)
	}
	return out
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
