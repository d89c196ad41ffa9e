// Package web serves the chat example's page: a small chat UI (index.html,
// app.js, style.css) built on pomelo-client.js, the project's JavaScript
// client for the Pomelo protocol (the package in clients/js, served from
// there), which the page imports as an ES module.
package web

import (
	"embed"
	"encoding/json"
	"net/http"

	jsclient "github.com/pomelo-go/pomelo/clients/js"
)

//go:embed index.html app.js style.css
var files embed.FS

// Files returns the page's own files; the client module is served from
// package js (clients/js) at /pomelo-client.js.
func Files() embed.FS { return files }

// GateFunc returns where clients reach a gate server, and false when no
// gate is up.
type GateFunc func() (host string, port int, ok bool)

// config is the body of /config.json.
type config struct {
	Gate *gateAddr `json:"gate"`
}

type gateAddr struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Handler serves the page, and /config.json, which tells the page where the
// gate is: {"gate":{"host":"127.0.0.1","port":3014}} (gate is null when no
// gate is up).
func Handler(gate GateFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		var c config
		if host, port, ok := gate(); ok {
			c.Gate = &gateAddr{Host: host, Port: port}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(c)
	})
	noCache := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("GET /", noCache(http.FileServerFS(files)))
	mux.Handle("GET /"+jsclient.ModuleFile, noCache(http.FileServerFS(jsclient.FS())))
	return mux
}
