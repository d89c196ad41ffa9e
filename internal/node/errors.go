package node

import (
	"github.com/pomelo-go/pomelo/runtime"
)

// asUnavailable converts the error of a call to serverID into an
// *runtime.Error: structured errors from the remote side are kept,
// transport failures become UNAVAILABLE.
func asUnavailable(serverID string, err error) error {
	return runtime.FromConnectError(serverID, err)
}
