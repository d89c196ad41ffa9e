package wire

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidateRoute reports whether route is well formed, as any route a
// client sends or a server pushes must be. A well-formed route:
//
//   - is 1 to [MaxRouteLen] bytes long;
//   - is valid UTF-8;
//   - holds no control character (Unicode category Cc, such as NUL, TAB or
//     DEL) and no white space (Unicode White_Space);
//   - is one or more non-empty segments separated by single dots: no
//     leading, trailing or doubled dot.
//
// Handler routes such as "chat.chatHandler.send" and push routes such as
// "onChat" are well formed. The error wraps [ErrMalformed], or
// [ErrTooLarge] for a route over [MaxRouteLen] bytes; it never quotes the
// route itself, which may not be printable.
func ValidateRoute(route string) error {
	switch {
	case route == "":
		return fmt.Errorf("%w: empty route", ErrMalformed)
	case len(route) > MaxRouteLen:
		return fmt.Errorf("%w: route of %d bytes, at most %d allowed", ErrTooLarge, len(route), MaxRouteLen)
	}
	segStart := 0
	for i, r := range route {
		switch {
		case r == utf8.RuneError && isInvalidAt(route, i):
			return fmt.Errorf("%w: route is not valid UTF-8 (byte %d)", ErrMalformed, i)
		case r == '.':
			if i == segStart {
				return fmt.Errorf("%w: empty route segment at byte %d", ErrMalformed, i)
			}
			segStart = i + 1
		case unicode.IsControl(r) || unicode.IsSpace(r):
			return fmt.Errorf("%w: route holds control or space character U+%04X at byte %d", ErrMalformed, r, i)
		}
	}
	if segStart == len(route) {
		return fmt.Errorf("%w: route ends with a dot", ErrMalformed)
	}
	return nil
}

// isInvalidAt reports whether the U+FFFD that range decoded at byte i of s
// stands for invalid UTF-8 (one byte) rather than an encoded U+FFFD.
func isInvalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// ValidateHandlerRoute reports whether route is a well-formed route (see
// [ValidateRoute]) of a client request or notify: exactly three segments,
// serverType.handler.method, such as "chat.chatHandler.send".
func ValidateHandlerRoute(route string) error {
	if err := ValidateRoute(route); err != nil {
		return err
	}
	if n := strings.Count(route, ".") + 1; n != 3 {
		return fmt.Errorf("%w: route has %d segments, want serverType.handler.method", ErrMalformed, n)
	}
	return nil
}
