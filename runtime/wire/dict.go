package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
)

// MaxDictLen is the most routes a dictionary can hold: codes are 16-bit and 0 is unused.
const MaxDictLen = 1<<16 - 1

// Dict is a route dictionary: it maps routes to the 2-byte codes that compressed messages
// carry instead (codes start at 1), and back. A Dict is immutable and safe for concurrent use.
// A nil *Dict behaves as an empty dictionary.
type Dict struct {
	codes   map[string]uint16
	routes  []string // routes[code-1]
	version string
}

// NewDict builds the dictionary every server of a cluster must agree on: codes 1..N are the
// handler routes, sorted and de-duplicated, followed by the extra (push) routes, sorted, that
// are not handler routes. Its version is the first 16 hex digits of the SHA-256 of the
// ordered routes joined by "\n", so equal dictionaries have equal versions. An empty route
// yields an error wrapping ErrMalformed; more than MaxDictLen routes, ErrTooLarge.
func NewDict(handlerRoutes, extraRoutes []string) (*Dict, error) {
	handlers := sortedUnique(handlerRoutes)
	routes := slices.Clip(handlers)
	for _, r := range sortedUnique(extraRoutes) {
		if _, found := slices.BinarySearch(handlers, r); !found {
			routes = append(routes, r)
		}
	}
	if slices.Contains(routes, "") {
		return nil, fmt.Errorf("%w: empty route in dictionary", ErrMalformed)
	}
	if len(routes) > MaxDictLen {
		return nil, fmt.Errorf("%w: %d routes in dictionary, at most %d allowed", ErrTooLarge, len(routes), MaxDictLen)
	}
	d := &Dict{codes: make(map[string]uint16, len(routes)), routes: routes}
	h := sha256.New()
	for i, r := range routes {
		d.codes[r] = uint16(i + 1)
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		io.WriteString(h, r)
	}
	d.version = hex.EncodeToString(h.Sum(nil))[:16]
	return d, nil
}

// sortedUnique returns a sorted copy of s without duplicates.
func sortedUnique(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

// Code returns the code of route, and whether the dictionary holds it.
func (d *Dict) Code(route string) (uint16, bool) {
	if d == nil {
		return 0, false
	}
	c, ok := d.codes[route]
	return c, ok
}

// Route returns the route of code, and whether the dictionary holds it.
func (d *Dict) Route(code uint16) (string, bool) {
	if d == nil || code == 0 || int(code) > len(d.routes) {
		return "", false
	}
	return d.routes[code-1], true
}

// Version returns the dictionary's content hash, 16 hex digits ("" for a nil Dict).
func (d *Dict) Version() string {
	if d == nil {
		return ""
	}
	return d.version
}

// Map returns a copy of the route-to-code map, for the handshake reply (nil for a nil Dict).
func (d *Dict) Map() map[string]uint16 {
	if d == nil {
		return nil
	}
	return maps.Clone(d.codes)
}

// Routes returns the routes in code order (the route of code c is at index c-1), as a copy.
func (d *Dict) Routes() []string {
	if d == nil {
		return nil
	}
	return slices.Clone(d.routes)
}

// Len returns the number of routes in the dictionary.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.routes)
}
