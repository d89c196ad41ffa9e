package app

import (
	"github.com/pomelo-go/pomelo/runtime/cluster"
)

// Session settings the example keeps on a connector session after Enter.
const (
	// SettingRID is the room id, as in Pomelo's chat demo.
	SettingRID = "rid"
	// SettingChatServer is the id of the chat server that holds the room.
	SettingChatServer = "chat"
)

// ChatRoute is the route function of the "chat" server type: a message of
// a session that entered a room goes to the chat server holding the room
// (the one recorded in the session at Enter, while it is a member), else to
// the server the room id hashes to, as Pomelo's demo routes by "rid". Other
// messages (an echo before entering) go by the default key.
//
// Recording the server makes rooms stay where they were created: when a chat
// server joins, the rooms whose id would now hash to it keep their server
// until they empty, and only new rooms go to the new server (Enter asks
// every chat server whether it already holds a room before placing it).
func ChatRoute(rc cluster.RouteContext, servers []cluster.ServerInfo) cluster.ServerInfo {
	if rc.Session != nil {
		if id, ok := rc.Session.Get(SettingChatServer); ok {
			for _, s := range servers {
				if s.ID == id {
					return s
				}
			}
		}
		if rid, ok := rc.Session.Get(SettingRID); ok && rid != "" {
			return cluster.Rendezvous(rid, servers)
		}
	}
	return cluster.Rendezvous(rc.Key, servers)
}
