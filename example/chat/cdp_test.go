package main

// A minimal Chrome DevTools Protocol driver for the browser test: it starts
// a headless Chromium, opens pages in separate browser contexts (like two
// people on two machines), evaluates JavaScript in them, types, takes
// screenshots and closes tabs. It speaks CDP's JSON messages over the
// browser's WebSocket with github.com/coder/websocket, which the framework
// already depends on.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

type browser struct {
	t    *testing.T
	cmd  *exec.Cmd
	ws   *websocket.Conn
	ctx  context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpReply
	onEvent func(method, session string, params json.RawMessage)
	stderr  bytes.Buffer
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type cdpMessage struct {
	ID        int64           `json:"id"`
	Method    string          `json:"method"`
	SessionID string          `json:"sessionId"`
	Params    json.RawMessage `json:"params"`
	cdpReply
}

// chromiumFlags work headless as root on a machine without a display.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
	"--remote-debugging-port=0",
}

// startBrowser starts Chromium at path with a fresh profile and the
// chromiumFlags and flags, and connects to it; it is stopped when the test
// ends.
func startBrowser(t *testing.T, path string, flags ...string) *browser {
	t.Helper()
	profile := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	b := &browser{t: t, ctx: ctx, stop: stop, pending: map[int64]chan cdpReply{}}
	b.cmd = exec.CommandContext(ctx, path, append(append(append([]string(nil), chromiumFlags...), flags...), "--user-data-dir="+profile, "about:blank")...)
	b.cmd.Stderr = &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(b.close)

	// Chromium writes its DevTools port and path into the profile.
	var wsURL string
	deadline := time.Now().Add(30 * time.Second)
	for wsURL == "" {
		if b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort")); err == nil {
			if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) == 2 {
				wsURL = "ws://127.0.0.1:" + lines[0] + lines[1]
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium did not start its DevTools endpoint\n%s", b.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, wsURL, nil)
	if err != nil {
		t.Fatalf("connect to chromium at %s: %v", wsURL, err)
	}
	ws.SetReadLimit(64 << 20)
	b.ws = ws
	go b.read()
	return b
}

func (b *browser) close() {
	if b.ws != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.call(ctx, "", "Browser.close", nil, nil)
		cancel()
		b.ws.CloseNow()
	}
	done := make(chan struct{})
	go func() {
		b.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.stop()
		<-done
	}
	b.stop()
}

func (b *browser) read() {
	for {
		_, data, err := b.ws.Read(b.ctx)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.pending[m.ID]; ok {
				delete(b.pending, m.ID)
				ch <- m.cdpReply
			}
		} else if b.onEvent != nil {
			fn := b.onEvent
			b.mu.Unlock()
			fn(m.Method, m.SessionID, m.Params)
			continue
		}
		b.mu.Unlock()
	}
}

// call sends a CDP command, to the browser (session "") or to a page's
// session, and decodes its result into out.
func (b *browser) call(ctx context.Context, session, method string, params, out any) error {
	ch := make(chan cdpReply, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if err := b.ws.Write(ctx, websocket.MessageText, data); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: connection to chromium lost", method)
		}
		if r.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// page is a tab in its own browser context.
type page struct {
	b       *browser
	name    string
	target  string
	session string
}

// newPage opens url in a new tab of a new browser context.
func (b *browser) newPage(ctx context.Context, name, url string) *page {
	b.t.Helper()
	return b.newPageVia(ctx, name, url, "")
}

// newPageVia opens url in a new tab of a new browser context whose
// connections, loopback included, go through the SOCKS5 proxy at
// proxyAddr ("host:port"; "" for none).
func (b *browser) newPageVia(ctx context.Context, name, url, proxyAddr string) *page {
	b.t.Helper()
	var bc struct {
		BrowserContextID string `json:"browserContextId"`
	}
	params := map[string]any{"disposeOnDetach": true}
	if proxyAddr != "" {
		// "<-loopback>" removes the implicit bypass of loopback addresses.
		params["proxyServer"] = "socks5://" + proxyAddr
		params["proxyBypassList"] = "<-loopback>"
	}
	if err := b.call(ctx, "", "Target.createBrowserContext", params, &bc); err != nil {
		b.t.Fatal(err)
	}
	var tg struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc.BrowserContextID}, &tg); err != nil {
		b.t.Fatal(err)
	}
	var at struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": tg.TargetID, "flatten": true}, &at); err != nil {
		b.t.Fatal(err)
	}
	p := &page{b: b, name: name, target: tg.TargetID, session: at.SessionID}
	for _, c := range []struct {
		method string
		params any
	}{
		{"Runtime.enable", nil},
		{"Page.enable", nil},
		{"Emulation.setDeviceMetricsOverride", map[string]any{"width": 1000, "height": 720, "deviceScaleFactor": 1, "mobile": false}},
		{"Page.navigate", map[string]any{"url": url}},
	} {
		if err := b.call(ctx, p.session, c.method, c.params, nil); err != nil {
			b.t.Fatalf("%s: %v", name, err)
		}
	}
	p.waitFor(ctx, "the page to load", `document.readyState === "complete"`)
	return p
}

// eval evaluates a JavaScript expression in the page, awaiting a promise,
// and decodes its value into out (when not nil).
func (p *page) eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.b.call(ctx, p.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "awaitPromise": true, "returnByValue": true,
	}, &r)
	if err != nil {
		return err
	}
	if e := r.ExceptionDetails; e != nil {
		return fmt.Errorf("%s: %s %s", expr, e.Text, e.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

// run evaluates expr, failing the test on an error.
func (p *page) run(ctx context.Context, expr string) {
	p.b.t.Helper()
	if err := p.eval(ctx, expr, nil); err != nil {
		p.b.t.Fatalf("%s: %v", p.name, err)
	}
}

// waitFor polls cond, a JavaScript expression, until it is true. ctx bounds
// the wait, so that a broken page fails the test instead of hanging it.
func (p *page) waitFor(ctx context.Context, what, cond string) {
	p.b.t.Helper()
	var last error
	for {
		var ok bool
		if last = p.eval(ctx, "Boolean("+cond+")", &ok); last == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			p.b.t.Fatalf("%s: waiting for %s: %v (last error: %v)", p.name, what, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// typeInto focuses the element of selector, clears it and types text.
func (p *page) typeInto(ctx context.Context, selector, text string) {
	p.b.t.Helper()
	p.run(ctx, fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.focus(); el.select && el.select(); })()`, selector))
	if err := p.b.call(ctx, p.session, "Input.insertText", map[string]any{"text": text}, nil); err != nil {
		p.b.t.Fatalf("%s: type into %s: %v", p.name, selector, err)
	}
}

// click clicks the element of selector.
func (p *page) click(ctx context.Context, selector string) {
	p.b.t.Helper()
	p.run(ctx, fmt.Sprintf(`document.querySelector(%q).click()`, selector))
}

// screenshot returns a PNG of the page.
func (p *page) screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := p.b.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}

// emulateOffline takes the page offline (DevTools network emulation:
// navigator.onLine false, the "offline" event, new requests fail) or back
// online. It does not stop a WebSocket that is open already.
func (p *page) emulateOffline(ctx context.Context, offline bool) {
	p.b.t.Helper()
	for _, c := range []struct {
		method string
		params any
	}{
		{"Network.enable", nil},
		{"Network.emulateNetworkConditions", map[string]any{"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}},
	} {
		if err := p.b.call(ctx, p.session, c.method, c.params, nil); err != nil {
			p.b.t.Fatalf("%s: %v", p.name, err)
		}
	}
}

// closeTab closes the page's tab, as a user closing it.
func (p *page) closeTab(ctx context.Context) error {
	var r struct {
		Success bool `json:"success"`
	}
	if err := p.b.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": p.target}, &r); err != nil {
		return err
	}
	if !r.Success {
		return errors.New("Target.closeTarget failed")
	}
	return nil
}
