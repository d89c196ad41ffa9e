package runtime

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

func TestJSONAcceptsCESU8FromStockClients(t *testing.T) {
	// "hi 😀" as the stock JavaScript client encodes it: the emoji's two
	// UTF-16 surrogates D83D DE00, each as a 3-byte sequence.
	body := []byte("{\"text\":\"hi \xed\xa0\xbd\xed\xb8\x80\",\"bad\":\"\xff\"}")
	st := &structpb.Struct{}
	if err := JSON.Unmarshal(body, st); err != nil {
		t.Fatal(err)
	}
	if got := st.Fields["text"].GetStringValue(); got != "hi 😀" {
		t.Fatalf("text = %q", got)
	}
	if got := st.Fields["bad"].GetStringValue(); got != "\uFFFD" {
		t.Fatalf("bad = %q", got)
	}
}

func FuzzRepairUTF8(f *testing.F) {
	f.Add([]byte("\xed\xa0\xbd\xed\xb8\x80"))
	f.Add([]byte("\xed\xa0\xbd"))
	f.Add([]byte("ok\xff\xfe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := repairUTF8(b)
		if !utf8.Valid(out) {
			t.Fatalf("repairUTF8(%q) = %q is not valid UTF-8", b, out)
		}
		if utf8.Valid(b) && string(out) != string(b) {
			t.Fatalf("valid input changed: %q -> %q", b, out)
		}
	})
}
