package app

import (
	"context"

	"github.com/pomelo-go/pomelo"
	chatv1 "github.com/pomelo-go/pomelo/example/chat/gen/chat/v1"
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// MetadataClientHost is the cluster file metadata key of the host clients
// reach a connector at, when it differs from the host servers use.
const MetadataClientHost = "clientHost"

// gate serves gate.gateHandler.* on "gate" servers.
type gate struct {
	chatv1.UnimplementedGateHandlerServer
	app *pomelo.App
}

// QueryEntry picks the connector for the uid by rendezvous hashing over the
// connectors with a WebSocket port.
func (g *gate) QueryEntry(_ context.Context, _ pomelo.Session, req *chatv1.QueryEntryRequest) (*chatv1.QueryEntryResponse, error) {
	if req.GetUid() == "" {
		return nil, pomelo.Errorf(pomelo.ErrBadRequest, "queryEntry needs a uid")
	}
	var connectors []cluster.ServerInfo
	for _, s := range g.app.Members(TypeConnector) {
		if s.WSPort > 0 {
			connectors = append(connectors, s)
		}
	}
	if len(connectors) == 0 {
		return nil, pomelo.Errorf(pomelo.ErrUnavailable, "no connector is up")
	}
	c := cluster.Rendezvous(req.GetUid(), connectors)
	return &chatv1.QueryEntryResponse{Code: 200, Host: clientHost(c), Port: int32(c.WSPort)}, nil
}

// clientHost returns the host clients reach server s at.
func clientHost(s cluster.ServerInfo) string {
	if h := s.Metadata[MetadataClientHost]; h != "" {
		return h
	}
	return s.Host
}
