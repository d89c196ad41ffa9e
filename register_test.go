package pomelo_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pomelo-go/pomelo"
	testingv1 "github.com/pomelo-go/pomelo/gen/pomelo/testing/v1"
	pomelov1 "github.com/pomelo-go/pomelo/gen/pomelo/v1"
	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// TestServerTypeConstantsAreTheAnnotatedServerTypes checks the generated
// server-type constants against the server_type of each service's
// pomelo.v1.service annotation, and that the generated route tables use
// them.
func TestServerTypeConstantsAreTheAnnotatedServerTypes(t *testing.T) {
	consts := map[protoreflect.Name]string{
		"EchoHandler": testingv1.EchoHandlerServerType,
		"EchoRemote":  testingv1.EchoRemoteServerType,
	}
	services := testingv1.File_pomelo_testing_v1_testing_proto.Services()
	for i := range services.Len() {
		sd := services.Get(i)
		ann := proto.GetExtension(sd.Options(), pomelov1.E_Service).(*pomelov1.ServiceOptions)
		if ann.GetKind() == pomelov1.ServiceKind_SERVICE_KIND_PUSH {
			continue
		}
		c, ok := consts[sd.Name()]
		if !ok {
			t.Errorf("service %s has no server-type constant in this test", sd.Name())
			continue
		}
		if c != ann.GetServerType() || c == "" {
			t.Errorf("%sServerType = %q, annotation says %q", sd.Name(), c, ann.GetServerType())
		}
	}
	for _, r := range append(testingv1.EchoHandlerRoutes, testingv1.EchoRemoteRoutes...) {
		if r.ServerType != testingv1.EchoHandlerServerType {
			t.Errorf("route %s has server type %q", r.Route, r.ServerType)
		}
	}
}

// TestRegisteringARemoteTwiceIsAnErrorAndTheFirstKeepsServing registers the
// same remote service twice on an App: the second registration fails, and
// the service registered first still answers.
func TestRegisteringARemoteTwiceIsAnErrorAndTheFirstKeepsServing(t *testing.T) {
	ln := listen(t)
	app, err := pomelo.New(pomelo.Config{
		ID: "echo-1", Type: "echo", RPCListener: ln,
		Membership: cluster.NewStatic(info("echo-1", "echo", false, ln)), Secret: "s", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{app: app}
	if err := testingv1.RegisterEchoRemoteServer(app, e); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	err = testingv1.RegisterEchoRemoteServer(app, e)
	if err == nil || !strings.Contains(err.Error(), testingv1.EchoRemoteServiceName) {
		t.Fatalf("second registration: err = %v, want an error naming %s", err, testingv1.EchoRemoteServiceName)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := serve(t, ctx, app)
	defer func() {
		cancel()
		if err := wait(t, done); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	who, err := testingv1.NewEchoRemoteClient(app).Whoami(runtime.WithRouteKey(rctx, "k"), &testingv1.WhoamiRequest{Note: "n"})
	if err != nil || who.GetServerId() != "echo-1" || who.GetNote() != "n" {
		t.Fatalf("remote call after the refused registration: %v, %v", who, err)
	}
}

// TestRegisteringARemoteWithoutARegistrarOrServerIsAnError checks that
// the generated Register function and the App refuse what cannot serve,
// with an error rather than a panic.
func TestRegisteringARemoteWithoutARegistrarOrServerIsAnError(t *testing.T) {
	ln := listen(t)
	app, err := pomelo.New(pomelo.Config{
		ID: "echo-1", Type: "echo", RPCListener: ln,
		Membership: cluster.NewStatic(info("echo-1", "echo", false, ln)), Secret: "s", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := &echoServer{app: app}
	for name, register := range map[string]func() error{
		"nil registrar":                  func() error { return testingv1.RegisterEchoRemoteServer(nil, e) },
		"nil server":                     func() error { return testingv1.RegisterEchoRemoteServer(app, nil) },
		"zero App":                       func() error { return testingv1.RegisterEchoRemoteServer(&pomelo.App{}, e) },
		"nil handler":                    func() error { return app.MountRPC("/x.v1.X/", nil) },
		"relative path":                  func() error { return app.MountRPC("x.v1.X/", http.NotFoundHandler()) },
		"empty path":                     func() error { return app.MountRPC("", http.NotFoundHandler()) },
		"nil App":                        func() error { return (*pomelo.App)(nil).MountRPC("/x.v1.X/", http.NotFoundHandler()) },
		"handler service, nil registrar": func() error { return testingv1.RegisterEchoHandlerServer(nil, e) },
		"conflicting pattern": func() error {
			if err := app.MountRPC("/x.v1.Conflict/{a}", http.NotFoundHandler()); err != nil {
				t.Fatalf("first pattern: %v", err)
			}
			return app.MountRPC("/x.v1.Conflict/{b}", http.NotFoundHandler())
		},
		"framework path": func() error { return app.MountRPC("/pomelo.sys.v1.MsgRemote/", http.NotFoundHandler()) },
	} {
		err := register()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}
