package runtime

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
)

// HandlerFunc runs one route: it decodes body with ser into the route's
// request type, calls the user's method and returns its typed response.
// protoc-gen-pomelo generates one per route; there is no reflection.
type HandlerFunc func(ctx context.Context, s Session, ser Serializer, body []byte) (proto.Message, error)

// HandlerDesc describes one client-facing route and how to run it.
type HandlerDesc struct {
	// Route is the full route, "serverType.handler.method".
	Route string
	// ServerType is the server type that serves the route.
	ServerType string
	// NotifyOnly marks a route that must be sent as a notify; a request to it
	// is answered with BAD_REQUEST.
	NotifyOnly bool
	// Handle runs the route.
	Handle HandlerFunc
}

// HandlerRegistrar accepts handler routes. The App implements it; so does
// HandlerTable, the dispatch table it is built on.
type HandlerRegistrar interface {
	RegisterHandler(HandlerDesc) error
}

// HandlerTable is a route-to-handler dispatch table. The zero value is ready
// to use; it is safe for concurrent use, and lookups take no lock once
// registration is over.
type HandlerTable struct {
	mu     sync.RWMutex
	routes map[string]*HandlerDesc
}

// RegisterHandler adds a route. Registering one route twice is an error.
func (t *HandlerTable) RegisterHandler(d HandlerDesc) error {
	if d.Handle == nil {
		return fmt.Errorf("pomelo: route %q has no handler", d.Route)
	}
	if err := ValidateRoute(d.Route); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.routes == nil {
		t.routes = make(map[string]*HandlerDesc)
	}
	if _, dup := t.routes[d.Route]; dup {
		return fmt.Errorf("pomelo: route %q registered twice", d.Route)
	}
	t.routes[d.Route] = &d
	return nil
}

// Lookup returns the handler of a route.
func (t *HandlerTable) Lookup(route string) (*HandlerDesc, bool) {
	t.mu.RLock()
	d, ok := t.routes[route]
	t.mu.RUnlock()
	return d, ok
}

// Routes returns the registered routes, sorted.
func (t *HandlerTable) Routes() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]string, 0, len(t.routes))
	for r := range t.routes {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Dispatch runs the handler of route. An unknown route is ErrUnknownRoute; a
// body that does not decode is BAD_REQUEST (generated handlers wrap decode
// errors with BadRequest).
func (t *HandlerTable) Dispatch(ctx context.Context, route string, s Session, ser Serializer, body []byte) (proto.Message, error) {
	d, ok := t.Lookup(route)
	if !ok {
		return nil, Errorf(ErrUnknownRoute, "no handler for %s", route)
	}
	return d.Handle(ctx, s, ser, body)
}

// BadRequest wraps a request decode error as a BAD_REQUEST error. Generated
// handlers call it.
func BadRequest(route string, err error) error {
	return Errorf(ErrBadRequest, "%s: cannot decode request body: %v", route, err)
}

// ValidateRoute checks a route: non-empty, at most 255 bytes (the wire
// protocol's limit), no spaces.
func ValidateRoute(route string) error {
	switch {
	case route == "":
		return fmt.Errorf("pomelo: empty route")
	case len(route) > 255:
		return fmt.Errorf("pomelo: route %q is %d bytes, longer than 255", route, len(route))
	case strings.ContainsAny(route, " \t\r\n"):
		return fmt.Errorf("pomelo: route %q contains white space", route)
	}
	return nil
}

// ServerTypeOf returns the server type part of a handler route
// ("chat.chatHandler.send" -> "chat"), and false for a route without dots.
func ServerTypeOf(route string) (string, bool) {
	i := strings.IndexByte(route, '.')
	if i <= 0 || strings.Count(route, ".") != 2 {
		return "", false
	}
	return route[:i], true
}
