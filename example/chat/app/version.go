package app

import (
	"strconv"
	"strings"
)

// VersionAtLeast reports whether the dotted version v ("0.0.1", "1.2") is
// at least minimum, comparing numbers part by part; a missing part counts as
// 0, and a part that is not a number, or an empty version, fails the check.
func VersionAtLeast(v, minimum string) bool {
	if minimum == "" {
		return true
	}
	a, ok := parseVersion(v)
	if !ok {
		return false
	}
	b, ok := parseVersion(minimum)
	if !ok {
		return false
	}
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x > y
		}
	}
	return true
}

func parseVersion(v string) ([]int, bool) {
	if v == "" {
		return nil, false
	}
	parts := strings.Split(v, ".")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}
