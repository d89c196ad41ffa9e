package runtime

import (
	"fmt"
	"sort"
	"sync"
)

// RouteKind says what a route is.
type RouteKind int

// Route kinds.
const (
	// RouteHandler is a client-facing handler route.
	RouteHandler RouteKind = iota + 1
	// RoutePush is a server-to-client push route.
	RoutePush
	// RouteRemote is a server-to-server remote procedure (a Connect path).
	RouteRemote
)

// String implements fmt.Stringer.
func (k RouteKind) String() string {
	switch k {
	case RouteHandler:
		return "handler"
	case RoutePush:
		return "push"
	case RouteRemote:
		return "remote"
	}
	return fmt.Sprintf("RouteKind(%d)", int(k))
}

// RouteInfo describes one route of a generated route table.
type RouteInfo struct {
	// Route is the route ("chat.chatHandler.send", "onChat") or, for remotes,
	// the Connect procedure ("/chat.v1.ChatRemote/Join").
	Route string
	// Kind is the kind of route.
	Kind RouteKind
	// ServerType serves the route (empty for push routes).
	ServerType string
	// NotifyOnly marks a notify-only handler route.
	NotifyOnly bool
	// Request and Response are the full protobuf names of the message types.
	Request, Response string
}

var routeRegistry struct {
	mu     sync.RWMutex
	routes map[string]RouteInfo
}

// RegisterRoutes records generated route tables; generated code calls it from
// init, so that every binary built from the same protos knows the same
// routes and hands out the same route dictionary. Registering the same
// route twice with the same description is harmless; with a different one it
// panics, since two .proto files then claim one route.
func RegisterRoutes(infos ...RouteInfo) {
	routeRegistry.mu.Lock()
	defer routeRegistry.mu.Unlock()
	if routeRegistry.routes == nil {
		routeRegistry.routes = make(map[string]RouteInfo)
	}
	for _, in := range infos {
		key := in.Kind.String() + " " + in.Route
		if old, ok := routeRegistry.routes[key]; ok && old != in {
			panic(fmt.Sprintf("pomelo: route %s %q declared twice: %+v and %+v", in.Kind, in.Route, old, in))
		}
		routeRegistry.routes[key] = in
	}
}

// RegisteredRoutes returns every route registered by generated code, sorted
// by route.
func RegisteredRoutes() []RouteInfo {
	routeRegistry.mu.RLock()
	defer routeRegistry.mu.RUnlock()
	out := make([]RouteInfo, 0, len(routeRegistry.routes))
	for _, in := range routeRegistry.routes {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Route != out[j].Route {
			return out[i].Route < out[j].Route
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

// RegisteredRoutesOf returns the routes of one kind, sorted.
func RegisteredRoutesOf(kind RouteKind) []string {
	var out []string
	for _, in := range RegisteredRoutes() {
		if in.Kind == kind {
			out = append(out, in.Route)
		}
	}
	return out
}
