package wire_test

import (
	"encoding/hex"
	"strings"
	"testing"
)

// hexs builds bytes from parts: a part starting with "=" is literal text (without the "="),
// any other part is hex digits, spaces allowed: hexs(t, "04 00 00 30 00 01 15", "=chat.chatHandler.echo").
func hexs(t testing.TB, parts ...string) []byte {
	t.Helper()
	var out []byte
	for _, p := range parts {
		if strings.HasPrefix(p, "=") {
			out = append(out, p[1:]...)
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(p, " ", ""))
		if err != nil {
			t.Fatalf("bad hex %q: %v", p, err)
		}
		out = append(out, b...)
	}
	return out
}
