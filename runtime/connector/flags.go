package connector

import (
	"errors"
	"fmt"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/wire"
)

// checkFlags refuses a message from a client whose flag byte (the first
// byte of body, a decoded message) sets a bit outside wire.ClientFlags: a
// protocol error, which closes the connection.
func checkFlags(body []byte) error {
	if extra := body[0] &^ wire.ClientFlags; extra != 0 {
		return fmt.Errorf("%w: unknown message flag bits %#02x", errProtocol, extra)
	}
	return nil
}

// gunzipBody replaces the body of m, flagged wire.FlagGzip, with its
// decompression, at most MaxPackageSize bytes. A body that does not
// decompress, or decompresses to more, answers a request BAD_REQUEST and
// drops a notify (logged); gunzipBody then reports false. The connection
// stays open either way.
func (cn *conn) gunzipBody(m *wire.Message) bool {
	body, err := wire.Gunzip(m.Body, cn.c.cfg.MaxPackageSize)
	if err == nil {
		m.Body, m.Gzip = body, false
		return true
	}
	msg := "gzip body does not decompress"
	if errors.Is(err, wire.ErrTooLarge) {
		msg = fmt.Sprintf("gzip body decompresses to more than %d bytes", cn.c.cfg.MaxPackageSize)
	}
	if m.Type == wire.Request && cn.accepting() {
		cn.c.h.Reject(cn.session(), m, runtime.Errorf(runtime.ErrBadRequest, "%s", msg))
	} else {
		cn.c.cfg.Logger.Debug("pomelo: dropping notify", "remote", cn.RemoteAddr(), "session", cn.session().ID(), "route", m.Route, "error", err)
	}
	return false
}
