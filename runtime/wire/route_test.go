package wire_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/pomelo-go/pomelo/runtime/wire"
)

var routeCases = []struct {
	route   string
	ok      bool // ValidateRoute
	handler bool // ValidateHandlerRoute
}{
	{"chat.chatHandler.send", true, true},
	{"connector.entryHandler.enter", true, true},
	{"onChat", true, false},
	{"area.playerHandler", true, false},
	{"chat.h.é", true, true},
	{"chat.h.\uFFFD", true, true}, // an encoded U+FFFD is valid UTF-8
	{strings.Repeat("a", wire.MaxRouteLen), true, false},
	{"", false, false},
	{strings.Repeat("a", wire.MaxRouteLen+1), false, false},
	{"chat.\xff\xfe.echo", false, false},
	{"chat.h.echo\xc3", false, false},
	{".chat.h", false, false},
	{"chat.h.", false, false},
	{"chat..h", false, false},
	{".", false, false},
	{"chat.h.e cho", false, false},
	{"chat.h.echo\n", false, false},
	{"chat.h.\x00echo", false, false},
	{"chat.h.\x7fecho", false, false},
	{"chat.h.\u0085echo", false, false},
	{"chat.h.\u00a0echo", false, false},
	{"chat.h.\u2028echo", false, false},
}

func TestValidateRouteAcceptsPomeloRoutesAndRejectsMalformedOnes(t *testing.T) {
	for _, c := range routeCases {
		err := wire.ValidateRoute(c.route)
		if (err == nil) != c.ok {
			t.Errorf("ValidateRoute(%q) = %v, want ok=%v", c.route, err, c.ok)
		}
		if err != nil && !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, wire.ErrTooLarge) {
			t.Errorf("ValidateRoute(%q) = %v, wraps no sentinel", c.route, err)
		}
		if err != nil && c.route != "" && strings.Contains(err.Error(), c.route) {
			t.Errorf("ValidateRoute(%q) error %q quotes the route", c.route, err)
		}
		herr := wire.ValidateHandlerRoute(c.route)
		if (herr == nil) != c.handler {
			t.Errorf("ValidateHandlerRoute(%q) = %v, want ok=%v", c.route, herr, c.handler)
		}
	}
}

func FuzzValidateRoute(f *testing.F) {
	for _, c := range routeCases {
		f.Add(c.route)
	}
	f.Fuzz(func(t *testing.T, route string) {
		err := wire.ValidateRoute(route)
		herr := wire.ValidateHandlerRoute(route)
		if err != nil {
			if herr == nil {
				t.Fatalf("%q: a malformed route passed as a handler route", route)
			}
			return
		}
		if !utf8.ValidString(route) {
			t.Fatalf("%q: accepted but not valid UTF-8", route)
		}
		if route == "" || len(route) > wire.MaxRouteLen {
			t.Fatalf("%q: accepted with length %d", route, len(route))
		}
		segs := strings.Split(route, ".")
		for _, s := range segs {
			if s == "" {
				t.Fatalf("%q: accepted with an empty segment", route)
			}
		}
		if strings.IndexFunc(route, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
			t.Fatalf("%q: accepted with a control or space character", route)
		}
		if (herr == nil) != (len(segs) == 3) {
			t.Fatalf("%q: %d segments, ValidateHandlerRoute = %v", route, len(segs), herr)
		}
		// A well-formed route survives the message codec unchanged.
		m := wire.Message{Type: wire.Request, ID: 1, Route: route}
		b, err := wire.AppendMessage(nil, &m)
		if err != nil {
			t.Fatalf("%q: encode: %v", route, err)
		}
		got, err := wire.DecodeMessage(b)
		if err != nil || got.Route != route {
			t.Fatalf("%q: decoded %q, %v", route, got.Route, err)
		}
	})
}
