package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/pomelo-go/pomelo/example/chat/web"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// TestHandlerServesThePageConfigAndClientModule checks every path the page
// loads, and that the client module is the one of clients/js.
func TestHandlerServesThePageConfigAndClientModule(t *testing.T) {
	up := true
	h := web.Handler(func() (string, int, bool) { return "127.0.0.1", 3014, up })

	res, body := get(t, h, "/config.json")
	if res.StatusCode != 200 || strings.TrimSpace(body) != `{"gate":{"host":"127.0.0.1","port":3014}}` {
		t.Errorf("config.json = %d %s", res.StatusCode, body)
	}
	up = false
	if _, body := get(t, h, "/config.json"); strings.TrimSpace(body) != `{"gate":null}` {
		t.Errorf("config.json without a gate = %s", body)
	}

	for path, want := range map[string]struct{ typ, text string }{
		"/":                 {"text/html", `<script type="module" src="app.js">`},
		"/app.js":           {"text/javascript", `from './pomelo-client.js'`},
		"/pomelo-client.js": {"text/javascript", "export class PomeloClient"},
		"/style.css":        {"text/css", "#messages"},
	} {
		res, body := get(t, h, path)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), want.typ) || !strings.Contains(body, want.text) {
			t.Errorf("GET %s = %d %s, want %s holding %q", path, res.StatusCode, res.Header.Get("Content-Type"), want.typ, want.text)
		}
	}
	// The client module is the package's own file, not a copy.
	src, err := os.ReadFile("../../../clients/js/pomelo-client.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, h, "/pomelo-client.js"); body != string(src) {
		t.Errorf("GET /pomelo-client.js is not clients/js/pomelo-client.js")
	}
	if res, _ := get(t, h, "/nope.js"); res.StatusCode != 404 {
		t.Errorf("GET /nope.js = %d", res.StatusCode)
	}
}
