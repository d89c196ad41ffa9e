package cluster

// RouteFunc picks the server a message or remote call goes to, from the
// servers of one type (never empty, sorted by id) and the route key: the
// session's uid, or "frontendID#sessionID" for an unbound session, or an
// explicit runtime.WithRouteKey.
type RouteFunc func(key string, servers []ServerInfo) ServerInfo

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
