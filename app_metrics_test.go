package pomelo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	"github.com/pomelo-go/pomelo/internal/testenv"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
	"github.com/pomelo-go/pomelo/runtime/testkit"
)

// metricsCluster starts a frontend and an echo backend serving their admin
// listeners on free ports.
func metricsCluster(t *testing.T) *testkit.Cluster {
	t.Helper()
	return testkit.Start(t, testkit.Config{
		Servers: []testkit.Spec{{Type: "connector", Frontend: true}, {Type: "echo"}},
		Configure: func(cfg *pomelo.Config) {
			cfg.AdminAddr = "127.0.0.1:0"
			cfg.Pprof = true
		},
		Setup: func(m *testkit.Member) error { return register(m.App) },
	})
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

func TestAdminListenerServesHealthReadinessMetricsAndPprof(t *testing.T) {
	c := metricsCluster(t)
	front := c.Members("connector")[0].App
	base := "http://" + front.AdminAddr().String()
	for _, p := range []string{"/healthz", "/readyz", "/debug/pprof/"} {
		if code, body := httpGet(t, base+p); code != http.StatusOK {
			t.Errorf("GET %s: %d %q", p, code, body)
		}
	}
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		`pomelo_connections{server="connector-1",transport="tcp"} 0`,
		`pomelo_cluster_members{server="connector-1",type="echo"} 1`,
		`pomelo_sessions_bound{server="connector-1"} 0`,
		`pomelo_sessions_suspended{server="connector-1"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestAppWithoutAdminAddrHasNoAdminListener(t *testing.T) {
	c := testkit.Start(t, testkit.Config{Servers: []testkit.Spec{{Type: "connector", Frontend: true}}})
	if a := c.Members("connector")[0].App.AdminAddr(); a != nil {
		t.Fatalf("AdminAddr = %v without Config.AdminAddr", a)
	}
}

func TestReadyzAnswers503WhileDraining(t *testing.T) {
	ln := listen(t)
	app, err := pomelo.New(pomelo.Config{ID: "connector-1", Type: "connector", Frontend: true, RPCListener: ln,
		Secret: "s", AdminAddr: "127.0.0.1:0", DrainDelay: 2 * time.Second, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := serve(t, ctx, app)
	base := "http://" + app.AdminAddr().String()
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz while serving: %d", code)
	}
	if code, _ := httpGet(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof without Config.Pprof: %d, want 404", code)
	}
	cancel()
	// DrainDelay keeps the server, and its admin listener, up for a while
	// after it left the membership: readyz turns 503, healthz stays 200.
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, _ := httpGet(t, base+"/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d while draining", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("healthz while draining: %d", code)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the admin listener still answers after Serve returned")
	}
}

// prometheusServer runs a real Prometheus scraping targets every 200ms and
// returns its base URL.
func prometheusServer(t *testing.T, targets []string) string {
	t.Helper()
	bin := testenv.LookPath(t, "prometheus", "prometheus")
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 200ms
  scrape_timeout: 150ms
scrape_configs:
  - job_name: pomelo
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if res, err := http.Get(base + "/-/ready"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// promQuery returns the value of a PromQL query's only sample, and false
// when it has none.
func promQuery(t *testing.T, base, q string) (float64, bool) {
	t.Helper()
	res, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Status != "success" {
		t.Fatalf("query %s: %s", q, out.Error)
	}
	if len(out.Data.Result) != 1 {
		return 0, false
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q", q, s)
	}
	return v, true
}

// waitSeries waits until Prometheus's latest scrape gives q the value want.
func waitSeries(t *testing.T, base, q string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last float64
	var seen bool
	for time.Now().Before(deadline) {
		if last, seen = promQuery(t, base, q); seen && last == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s = %v (present %v), want %v", q, last, seen, want)
}

func TestPrometheusScrapesTheClusterSeries(t *testing.T) {
	c := metricsCluster(t)
	front, back := c.Members("connector")[0].App, c.Members("echo")[0].App
	prom := prometheusServer(t, []string{front.AdminAddr().String(), back.AdminAddr().String()})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, "tcp://"+front.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 7
	for i := range n {
		if _, err := testingv1.NewEchoHandlerClient(cl).Echo(ctx, &testingv1.EchoRequest{Text: "alice"}); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
	// A route in no route table is counted under "other", with its code.
	if _, isErr, err := cl.RequestRaw(ctx, "echo.nowhere.at-all", []byte("{}")); err != nil || !isErr {
		t.Fatalf("unknown route: error response %v, %v", isErr, err)
	}
	const calls = 3
	for range calls {
		if _, err := testingv1.NewEchoRemoteClient(front).Whoami(runtime.WithRouteKey(ctx, "k"), &testingv1.WhoamiRequest{Note: "n"}); err != nil {
			t.Fatal(err)
		}
	}

	waitSeries(t, prom, `pomelo_requests_total{server="connector-1",route="echo.echoHandler.echo",code="ok"}`, n)
	waitSeries(t, prom, `pomelo_requests_total{server="connector-1",route="other",code="UNKNOWN_ROUTE"}`, 1)
	waitSeries(t, prom, `pomelo_request_duration_seconds_count{server="connector-1",route="echo.echoHandler.echo",forwarded="true"}`, n)
	waitSeries(t, prom, `pomelo_forwarded_messages_total{server="connector-1",direction="sent"}`, n+1)
	waitSeries(t, prom, `pomelo_forwarded_messages_total{server="echo-1",direction="handled"}`, n+1)
	waitSeries(t, prom, `pomelo_forward_batch_size_sum{server="connector-1"}`, n+1)
	waitSeries(t, prom, `pomelo_connections{server="connector-1",transport="tcp"}`, 1)
	waitSeries(t, prom, `pomelo_sessions_bound{server="connector-1"}`, 1)
	// Each echo pushes to the room once, to the one frontend holding alice.
	waitSeries(t, prom, `pomelo_pushes_total{server="echo-1"}`, n)
	waitSeries(t, prom, `pomelo_push_deliveries_total{server="connector-1"}`, n)
	waitSeries(t, prom, `pomelo_rpc_handled_total{server="echo-1",kind="user",procedure="/pomelo.testing.v1.EchoRemote/Whoami",code="ok"}`, calls)
	waitSeries(t, prom, `pomelo_rpc_calls_total{server="connector-1",kind="user",procedure="/pomelo.testing.v1.EchoRemote/Whoami",code="ok"}`, calls)
	waitSeries(t, prom, `sum(pomelo_rpc_handled_total{server="connector-1",kind="sys",procedure="/pomelo.sys.v1.SessionRemote/Bind"})`, 1)
	waitSeries(t, prom, `pomelo_cluster_members{server="echo-1",type="connector"}`, 1)

	if err := front.Sessions().KickByUID("alice", "relogin"); err != 1 {
		t.Fatalf("kicked %d sessions", err)
	}
	waitSeries(t, prom, `pomelo_kicks_total{server="connector-1",reason="relogin"}`, 1)
	waitSeries(t, prom, `pomelo_sessions_bound{server="connector-1"}`, 0)
}

// The Grafana dashboard queries only series the servers expose.
func TestGrafanaDashboardUsesExposedSeries(t *testing.T) {
	dash, err := os.ReadFile("docs/grafana/pomelo.json")
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := json.Unmarshal(dash, &parsed); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	c := metricsCluster(t)
	// A vector shows once it has a child: one remote call makes the RPC's.
	front := c.Members("connector")[0].App
	if _, err := testingv1.NewEchoRemoteClient(front).Whoami(runtime.WithRouteKey(context.Background(), "k"), &testingv1.WhoamiRequest{}); err != nil {
		t.Fatal(err)
	}
	var exposed strings.Builder
	for _, m := range c.Members("") {
		_, body := httpGet(t, "http://"+m.App.AdminAddr().String()+"/metrics")
		exposed.WriteString(body)
	}
	names := regexp.MustCompile(`pomelo_[a-z_]+`).FindAllString(string(dash), -1)
	if len(names) == 0 {
		t.Fatal("the dashboard queries no pomelo series")
	}
	for _, n := range names {
		if !strings.Contains(exposed.String(), "# TYPE "+strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")+" ") {
			t.Errorf("the dashboard queries %s, which no server exposes", n)
		}
	}
}

// metricValue returns the value of one sample line of a /metrics page, and
// false when it is missing.
func metricValue(page, series string) (float64, bool) {
	for _, l := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestFailedRemoteCallsAreCountedByCodeOnBothSides(t *testing.T) {
	c := metricsCluster(t)
	front, back := c.Members("connector")[0].App, c.Members("echo")[0].App
	// The tests' echo server leaves Add unimplemented.
	_, err := testingv1.NewEchoRemoteClient(front).AddTo(context.Background(), "echo-1", &testingv1.AddRequest{})
	if err == nil {
		t.Fatal("Add succeeded")
	}
	code := runtime.AsError(err).Name // INTERNAL: unimplemented is a failure of the callee
	proc := testingv1.EchoRemoteAddProcedure
	_, page := httpGet(t, "http://"+front.AdminAddr().String()+"/metrics")
	made := fmt.Sprintf(`pomelo_rpc_calls_total{code=%q,kind="user",procedure=%q,server="connector-1"}`, code, proc)
	if v, ok := metricValue(page, made); !ok || v != 1 {
		t.Errorf("%s = %v (present %v), want 1", made, v, ok)
	}
	_, page = httpGet(t, "http://"+back.AdminAddr().String()+"/metrics")
	handled := fmt.Sprintf(`pomelo_rpc_handled_total{code=%q,kind="user",procedure=%q,server="echo-1"}`, code, proc)
	if v, ok := metricValue(page, handled); !ok || v != 1 {
		t.Errorf("%s = %v (present %v), want 1 in\n%s", handled, v, ok, grepLines(page, "pomelo_rpc_handled_total"))
	}
}

func grepLines(page, s string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
