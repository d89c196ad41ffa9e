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

// TestBrowser opens the example's page in a real headless Chromium for two
// users, who enter one room and talk; then one closes the tab and the
// other sees the leave. Set POMELO_SCREENSHOT_DIR to keep screenshots of
// the pages.
func TestBrowser(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium", "chromium", "chromium-browser")
	a := startApp(t, app.Options{WebAddr: "127.0.0.1:0"})
	b := startBrowser(t, chromium)

	var mu sync.Mutex
	var pageErrors []string
	b.mu.Lock()
	b.onEvent = func(method, session string, params json.RawMessage) {
		switch method {
		case "Runtime.exceptionThrown":
			mu.Lock()
			pageErrors = append(pageErrors, string(params))
			mu.Unlock()
		case "Runtime.consoleAPICalled":
			var c struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(params, &c) == nil && c.Type == "error" {
				mu.Lock()
				pageErrors = append(pageErrors, string(params))
				mu.Unlock()
			}
		}
	}
	b.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	screenshot := func(p *page, name string) {
		t.Helper()
		png, err := p.screenshot(ctx)
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		dir := os.Getenv("POMELO_SCREENSHOT_DIR")
		if dir == "" {
			dir = t.TempDir()
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	login := func(name string) *page {
		p := b.newPage(ctx, name, a.WebURL())
		p.waitFor(ctx, "the login form", `document.querySelector("#login") && getComputedStyle(document.querySelector("#chat")).display === "none"`)
		p.typeInto(ctx, "#username", name)
		p.typeInto(ctx, "#room", "gophers")
		p.click(ctx, "#enter")
		p.waitFor(ctx, "the chat room", `getComputedStyle(document.querySelector("#chat")).display !== "none"`)
		p.waitFor(ctx, "the login form to go", `getComputedStyle(document.querySelector("#login")).display === "none"`)
		return p
	}
	users := func(p *page) string {
		return `[...document.querySelectorAll("#users li")].map(li => li.textContent).join(",")`
	}
	lines := `[...document.querySelectorAll("#messages li")].map(li => li.className + "|" + li.textContent)`
	hasLine := func(p *page, what, class, text string) {
		t.Helper()
		p.waitFor(ctx, what, fmt.Sprintf(`%s.includes(%q)`, lines, class+"|"+text))
	}

	ann := login("ann")
	ann.waitFor(ctx, "ann alone in the room", users(ann)+` === "ann"`)
	bob := login("bob")
	bob.waitFor(ctx, "bob's user list", users(bob)+` === "ann,bob"`)
	ann.waitFor(ctx, "bob in ann's user list", users(ann)+` === "ann,bob"`)
	hasLine(ann, "bob entering", "system", "bob entered the room")

	// ann talks to the room.
	ann.typeInto(ctx, "#text", "hello bob")
	ann.click(ctx, "#send")
	hasLine(ann, "ann's own message", "msg", "annhello bob")
	hasLine(bob, "ann's message", "msg", "annhello bob")

	// bob answers ann only.
	bob.run(ctx, `document.querySelector("#target").value = "ann"`)
	bob.typeInto(ctx, "#text", "hi ann, just you")
	bob.click(ctx, "#send")
	hasLine(ann, "bob's private message", "msg private", "bob → annhi ann, just you")
	hasLine(bob, "bob's copy of his private message", "msg private", "bob → annhi ann, just you")
	ann.waitFor(ctx, "the status line", `document.querySelector("#status").textContent.startsWith("online as ann")`)
	screenshot(ann, "ann-chatting")
	screenshot(bob, "bob-chatting")

	// bob closes his tab: ann sees him leave.
	if err := bob.closeTab(ctx); err != nil {
		t.Fatal(err)
	}
	hasLine(ann, "bob leaving", "system", "bob left the room")
	ann.waitFor(ctx, "bob gone from the user list", users(ann)+` === "ann"`)
	screenshot(ann, "ann-after-bob-left")

	var got []string
	if err := ann.eval(ctx, lines, &got); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"system|you entered gophers",
		"system|bob entered the room",
		"msg|annhello bob",
		"msg private|bob → annhi ann, just you",
		"system|bob left the room",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ann's conversation:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range pageErrors {
		t.Errorf("error in a page: %s", e)
	}
}
