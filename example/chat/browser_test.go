package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pomelo-go/pomelo/example/chat/app"
	"github.com/pomelo-go/pomelo/internal/testenv"
)

// chatBrowser is a headless Chromium showing the example's page, with the
// errors its pages report.
type chatBrowser struct {
	t   *testing.T
	ctx context.Context
	b   *browser
	a   *app.App

	mu         sync.Mutex
	pageErrors []string
}

// startChatBrowser starts Chromium for the page of a; ctx bounds every
// wait of the test.
func startChatBrowser(t *testing.T, ctx context.Context, a *app.App, flags ...string) *chatBrowser {
	t.Helper()
	chromium := testenv.LookPath(t, "chromium", "chromium", "chromium-browser")
	cb := &chatBrowser{t: t, ctx: ctx, a: a, b: startBrowser(t, chromium, flags...)}
	cb.b.mu.Lock()
	cb.b.onEvent = func(method, session string, params json.RawMessage) {
		switch method {
		case "Runtime.exceptionThrown":
			cb.mu.Lock()
			cb.pageErrors = append(cb.pageErrors, string(params))
			cb.mu.Unlock()
		case "Runtime.consoleAPICalled":
			var c struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(params, &c) == nil && c.Type == "error" {
				cb.mu.Lock()
				cb.pageErrors = append(cb.pageErrors, string(params))
				cb.mu.Unlock()
			}
		}
	}
	cb.b.mu.Unlock()
	return cb
}

// open opens the page for name, through the SOCKS5 proxy at proxyAddr
// ("" for none), and enters room.
func (cb *chatBrowser) open(name, room, proxyAddr string) *page {
	cb.t.Helper()
	p := cb.b.newPageVia(cb.ctx, name, cb.a.WebURL(), proxyAddr)
	p.waitFor(cb.ctx, "the login form", `document.querySelector("#login") && getComputedStyle(document.querySelector("#chat")).display === "none"`)
	cb.enter(p, name, room)
	return p
}

// enter fills in the login form of p and enters room.
func (cb *chatBrowser) enter(p *page, name, room string) {
	cb.t.Helper()
	p.typeInto(cb.ctx, "#username", name)
	p.typeInto(cb.ctx, "#room", room)
	p.click(cb.ctx, "#enter")
	p.waitFor(cb.ctx, "the chat room", `getComputedStyle(document.querySelector("#chat")).display !== "none"`)
	p.waitFor(cb.ctx, "the login form to go", `getComputedStyle(document.querySelector("#login")).display === "none"`)
}

// users is an expression: the user list of the page, comma-separated.
const usersExpr = `[...document.querySelectorAll("#users li")].map(li => li.textContent).join(",")`

// linesExpr is an expression: the conversation's lines as "class|text".
const linesExpr = `[...document.querySelectorAll("#messages li")].map(li => li.className + "|" + li.textContent)`

// hasLine waits for a line of the conversation of p.
func (cb *chatBrowser) hasLine(p *page, what, class, text string) {
	cb.t.Helper()
	p.waitFor(cb.ctx, what, fmt.Sprintf(`%s.includes(%q)`, linesExpr, class+"|"+text))
}

// say sends text to the room from p.
func (cb *chatBrowser) say(p *page, text string) {
	cb.t.Helper()
	p.typeInto(cb.ctx, "#text", text)
	p.click(cb.ctx, "#send")
}

// conversation returns the lines of p's conversation.
func (cb *chatBrowser) conversation(p *page) []string {
	cb.t.Helper()
	var got []string
	if err := p.eval(cb.ctx, linesExpr, &got); err != nil {
		cb.t.Fatal(err)
	}
	return got
}

// checkConversation fails the test unless p's conversation is want.
func (cb *chatBrowser) checkConversation(p *page, want ...string) {
	cb.t.Helper()
	if got := cb.conversation(p); strings.Join(got, "\n") != strings.Join(want, "\n") {
		cb.t.Errorf("%s's conversation:\n%s\nwant:\n%s", p.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// screenshot keeps a PNG of p in $POMELO_SCREENSHOT_DIR (else a temporary
// directory).
func (cb *chatBrowser) screenshot(p *page, name string) {
	cb.t.Helper()
	png, err := p.screenshot(cb.ctx)
	if err != nil {
		cb.t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("POMELO_SCREENSHOT_DIR")
	if dir == "" {
		dir = cb.t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		cb.t.Fatal(err)
	}
}

// checkPageErrors fails the test for every error a page reported.
func (cb *chatBrowser) checkPageErrors() {
	cb.t.Helper()
	cb.mu.Lock()
	defer cb.mu.Unlock()
	for _, e := range cb.pageErrors {
		cb.t.Errorf("error in a page: %s", e)
	}
}

// TestBrowser opens the example's page in a real headless Chromium for two
// users, who enter one room and talk; then one closes the tab and the
// other sees the leave. Set POMELO_SCREENSHOT_DIR to keep screenshots of
// the pages.
func TestBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cb := startChatBrowser(t, ctx, startApp(t, app.Options{WebAddr: "127.0.0.1:0"}))

	ann := cb.open("ann", "gophers", "")
	ann.waitFor(ctx, "ann alone in the room", usersExpr+` === "ann"`)
	bob := cb.open("bob", "gophers", "")
	bob.waitFor(ctx, "bob's user list", usersExpr+` === "ann,bob"`)
	ann.waitFor(ctx, "bob in ann's user list", usersExpr+` === "ann,bob"`)
	cb.hasLine(ann, "bob entering", "system", "bob entered the room")

	// ann talks to the room.
	cb.say(ann, "hello bob")
	cb.hasLine(ann, "ann's own message", "msg", "annhello bob")
	cb.hasLine(bob, "ann's message", "msg", "annhello bob")

	// bob answers ann only.
	bob.run(ctx, `document.querySelector("#target").value = "ann"`)
	cb.say(bob, "hi ann, just you")
	cb.hasLine(ann, "bob's private message", "msg private", "bob → annhi ann, just you")
	cb.hasLine(bob, "bob's copy of his private message", "msg private", "bob → annhi ann, just you")
	ann.waitFor(ctx, "the status line", `document.querySelector("#status").textContent.startsWith("online as ann")`)
	cb.screenshot(ann, "ann-chatting")
	cb.screenshot(bob, "bob-chatting")

	// bob closes his tab: ann sees him leave.
	if err := bob.closeTab(ctx); err != nil {
		t.Fatal(err)
	}
	cb.hasLine(ann, "bob leaving", "system", "bob left the room")
	ann.waitFor(ctx, "bob gone from the user list", usersExpr+` === "ann"`)
	cb.screenshot(ann, "ann-after-bob-left")

	cb.checkConversation(ann,
		"system|you entered gophers",
		"system|bob entered the room",
		"msg|annhello bob",
		"msg private|bob → annhi ann, just you",
		"system|bob left the room",
	)
	cb.checkPageErrors()
}
