package cluster

import (
	"context"

	"github.com/pomelo-go/pomelo/runtime/session"
)

// SessionEvent reports that a watched session closed.
type SessionEvent struct {
	// Session is the session's last state. When its frontend could not be
	// reached any more, only ID and FrontendID are set: a session on a
	// frontend that is gone is gone too.
	Session session.Snapshot
}

// Locator tells which frontends hold sessions of uids: it returns the uids
// grouped by frontend id (a uid with sessions on several frontends is in
// each group; a uid with none is in no group). An online-status service
// such as runtime/online provides one.
type Locator func(ctx context.Context, uids []string) (map[string][]string, error)
