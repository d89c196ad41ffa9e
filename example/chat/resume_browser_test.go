package main

import (
	"context"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/internal/cutproxy"
)

// blip takes the page of p off the network: DevTools' network emulation
// goes offline (which leaves an open WebSocket alone) and the SOCKS5 proxy
// that carries the page's connections cuts them and refuses new ones.
func blip(t *testing.T, ctx context.Context, p *page, proxy *cutproxy.Proxy) {
	t.Helper()
	p.emulateOffline(ctx, true)
	proxy.Refuse(true)
	if n := proxy.Cut(); n == 0 {
		t.Fatalf("%s: no connection of the page went through the proxy", p.name)
	}
	p.waitFor(ctx, "the page offline", `navigator.onLine === false`)
}

// backOnline ends the blip.
func backOnline(t *testing.T, ctx context.Context, p *page, proxy *cutproxy.Proxy) {
	t.Helper()
	proxy.Refuse(false)
	p.emulateOffline(ctx, false)
}

func socksProxy(t *testing.T) *cutproxy.Proxy {
	t.Helper()
	proxy, err := cutproxy.NewSOCKS5()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	return proxy
}

const statusExpr = `document.querySelector("#status").textContent`

// TestBrowserResumesAfterANetworkBlip takes ann's page offline in the
// middle of a conversation (network emulation, and the proxy that carries
// the page's connections cuts them) and back online: the page shows
// "reconnecting…", resumes its session, shows what bob said meanwhile and
// sends what ann said meanwhile, each once and in order; bob sees no leave
// and no second entry.
func TestBrowserResumesAfterANetworkBlip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	proxy := socksProxy(t)
	cb := startChatBrowser(t, ctx, startApp(t, app.Options{WebAddr: "127.0.0.1:0"}))

	ann := cb.open("ann", "gophers", proxy.Addr())
	bob := cb.open("bob", "gophers", "")
	ann.waitFor(ctx, "bob in ann's user list", usersExpr+` === "ann,bob"`)
	bob.waitFor(ctx, "ann in bob's user list", usersExpr+` === "ann,bob"`)
	cb.say(ann, "before the blip")
	cb.hasLine(bob, "ann's first message", "msg", "annbefore the blip")

	blip(t, ctx, ann, proxy)
	ann.waitFor(ctx, `"reconnecting…"`, statusExpr+`.startsWith("reconnecting…")`)
	cb.say(bob, "while you were away")
	cb.hasLine(bob, "bob's own message", "msg", "bobwhile you were away")
	cb.say(ann, "sent while offline")
	cb.screenshot(ann, "ann-reconnecting")

	backOnline(t, ctx, ann, proxy)
	ann.waitFor(ctx, "ann online again", statusExpr+`.startsWith("online as ann")`)
	cb.hasLine(ann, "bob's message from the blip", "msg", "bobwhile you were away")
	cb.hasLine(bob, "ann's message from the blip", "msg", "annsent while offline")
	cb.say(bob, "after the blip")
	cb.hasLine(ann, "bob's message after the blip", "msg", "bobafter the blip")
	cb.screenshot(ann, "ann-resumed")

	cb.checkConversation(ann,
		"system|you entered gophers",
		"system|bob entered the room",
		"msg|annbefore the blip",
		"msg|bobwhile you were away",
		"msg|annsent while offline",
		"msg|bobafter the blip",
	)
	cb.checkConversation(bob,
		"system|you entered gophers",
		"msg|annbefore the blip",
		"msg|bobwhile you were away",
		"msg|annsent while offline",
		"msg|bobafter the blip",
	)
	for _, p := range []*page{ann, bob} {
		p.waitFor(ctx, "both users listed", usersExpr+` === "ann,bob"`)
	}
	cb.checkPageErrors()
}

// TestBrowserLosesTheSessionAfterTheWindow keeps ann's page off the
// network longer than the connectors' grace window: bob sees ann leave
// once the window ends; back online, ann's page is told the session is
// gone, says so and shows the login form, and ann enters again.
func TestBrowserLosesTheSessionAfterTheWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	proxy := socksProxy(t)
	cb := startChatBrowser(t, ctx, startApp(t, app.Options{WebAddr: "127.0.0.1:0", ResumeWindow: time.Second}))

	ann := cb.open("ann", "gophers", proxy.Addr())
	bob := cb.open("bob", "gophers", "")
	ann.waitFor(ctx, "bob in ann's user list", usersExpr+` === "ann,bob"`)

	blip(t, ctx, ann, proxy)
	ann.waitFor(ctx, `"reconnecting…"`, statusExpr+`.startsWith("reconnecting…")`)
	cb.hasLine(bob, "ann's leave once the window ended", "system", "ann left the room")
	bob.waitFor(ctx, "ann gone from bob's user list", usersExpr+` === "bob"`)

	backOnline(t, ctx, ann, proxy)
	ann.waitFor(ctx, "the login form", `getComputedStyle(document.querySelector("#login")).display !== "none"`)
	var shown struct {
		Error  string `json:"error"`
		Status string `json:"status"`
	}
	if err := ann.eval(ctx, `({error: document.querySelector("#login-error").textContent, status: `+statusExpr+`})`, &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Error != "You were offline too long: the server ended your session. Enter the room again." || shown.Status != "not connected" {
		t.Errorf("ann's page after the window: %+v", shown)
	}
	cb.screenshot(ann, "ann-session-lost")

	cb.enter(ann, "ann", "gophers")
	cb.hasLine(ann, "ann in the room again", "system", "you entered gophers")
	cb.hasLine(bob, "ann entering again", "system", "ann entered the room")
	ann.waitFor(ctx, "ann online", statusExpr+`.startsWith("online as ann")`)
	cb.say(bob, "welcome back")
	cb.hasLine(ann, "bob's message after the re-entry", "msg", "bobwelcome back")
	cb.checkConversation(bob,
		"system|you entered gophers",
		"system|ann left the room",
		"system|ann entered the room",
		"msg|bobwelcome back",
	)
	cb.checkPageErrors()
}
