package pomelo

import (
	"context"

	"github.com/pomelo-go/pomelo/internal/node"
	"github.com/pomelo-go/pomelo/runtime/session"
)

// BackendSessions is Pomelo's BackendSessionService: the sessions held by
// any frontend of the cluster, read and acted on from any server by
// frontend id and session id (App.BackendSessions).
type BackendSessions struct{ b *node.BackendSessions }

// Get returns a view of session sid on frontendID.
func (s *BackendSessions) Get(ctx context.Context, frontendID string, sid uint64) (*session.Local, error) {
	return s.b.Get(ctx, frontendID, sid)
}

// GetByUID returns views of every session of uid on frontendID.
func (s *BackendSessions) GetByUID(ctx context.Context, frontendID, uid string) ([]*session.Local, error) {
	return s.b.GetByUID(ctx, frontendID, uid)
}

// KickBySID kicks one session with reason.
func (s *BackendSessions) KickBySID(ctx context.Context, frontendID string, sid uint64, reason string) error {
	return s.b.KickBySID(ctx, frontendID, sid, reason)
}

// KickByUID kicks every session of uid on frontendID (on every frontend
// holding one when frontendID is "") and returns how many were kicked.
func (s *BackendSessions) KickByUID(ctx context.Context, frontendID, uid, reason string) (int, error) {
	return s.b.KickByUID(ctx, frontendID, uid, reason)
}
