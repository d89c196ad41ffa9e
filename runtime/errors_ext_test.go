package runtime_test

import (
	"errors"
	"testing"

	"github.com/pomelo-go/pomelo/runtime"
)

func TestRedactedHidesOnlyTheMessagesOfInternalFailures(t *testing.T) {
	for _, tc := range []struct {
		err  *runtime.Error
		want string
	}{
		{runtime.AsError(errors.New("db: password=hunter2")), "internal error"},
		{runtime.Errorf(runtime.ErrUnavailable, "chat-1: dial tcp 127.0.0.1:5330"), "service unavailable"},
		{runtime.Errorf(runtime.ErrTimeout, "chat-1 did not answer in time"), "request timed out"},
		{runtime.Errorf(runtime.ErrNotBound, "bind a uid first"), "bind a uid first"},
		{runtime.Errorf(runtime.ErrBadRequest, "bad body"), "bad body"},
		{runtime.NewError(1001, "not enough gold"), "not enough gold"},
	} {
		got := tc.err.Redacted()
		if got.Message != tc.want || got.Code != tc.err.Code || got.Name != tc.err.Name {
			t.Errorf("%v redacted to %+v, want message %q with the same code and name", tc.err, got, tc.want)
		}
		if changed := got != tc.err; changed != runtime.InternalName(tc.err.Name) {
			t.Errorf("%v: Redacted returned a new error: %v, want %v", tc.err, changed, !changed)
		}
		if again := got.Redacted(); again != got {
			t.Errorf("%v: redacting twice gave a new error", tc.err)
		}
	}
}
