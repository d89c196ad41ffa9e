package cluster

import "github.com/pomelo-go/pomelo/runtime"

// RouteContext is what a route function decides by.
type RouteContext struct {
	// Key is the default routing key: an explicit runtime.WithRouteKey, or
	// the session's uid, or "frontendID#sessionID" for an unbound session.
	Key string
	// Session is the session of the forwarded message or of the remote
	// call's context; nil when the call carries only a route key.
	Session runtime.Session
}

// RouteFunc picks the server a message or remote call goes to, from the
// servers of one type (never empty, sorted by id). A chat application may
// route by a room id kept in the session, for example:
//
//	func(rc cluster.RouteContext, servers []cluster.ServerInfo) cluster.ServerInfo {
//		if rid, ok := rc.Session.Get("rid"); ok {
//			return cluster.Rendezvous(rid, servers)
//		}
//		return cluster.Rendezvous(rc.Key, servers)
//	}
type RouteFunc func(rc RouteContext, servers []ServerInfo) ServerInfo

// RendezvousRoute is the default RouteFunc: Rendezvous of the key.
func RendezvousRoute(rc RouteContext, servers []ServerInfo) ServerInfo {
	return Rendezvous(rc.Key, servers)
}

// Rendezvous is the default route function: highest-random-weight hashing
// of the key. Adding a server moves only the keys it now wins (about
// 1/(n+1) of them), and removing one moves only its own keys.
func Rendezvous(key string, servers []ServerInfo) ServerInfo {
	var best ServerInfo
	var bestScore uint64
	for i, s := range servers {
		if sc := score(key, s.ID); i == 0 || sc > bestScore {
			best, bestScore = s, sc
		}
	}
	return best
}

func score(key, id string) uint64 {
	// FNV-1a over key, a zero byte and id, finished with splitmix64 (FNV
	// alone mixes the last bytes poorly).
	const prime = 1099511628211
	x := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		x = (x ^ uint64(key[i])) * prime
	}
	x *= prime
	for i := 0; i < len(id); i++ {
		x = (x ^ uint64(id[i])) * prime
	}
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
