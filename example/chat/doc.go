// Command chat is the pomelo-go example: the chat application of Pomelo's
// chatofpomelo-websocket demo, with its routes and JSON bodies, so that the
// demo's clients work unchanged, and a web page.
//
//	go run ./example/chat
//
// starts the whole cluster of the committed cluster file (cluster.json,
// embedded in the binary) in one process on loopback: the gate (WebSocket
// port 3014), two connectors (3010 and 3011), two chat servers, and the web
// page on http://127.0.0.1:3001. The same binary runs any subset of the
// servers, so that it deploys as a real cluster:
//
//	chat -cluster cluster.json -servers chat-3
//
// runs only chat-3, which the file marks optional (not started by
// default): the running servers find it at their next probe of the cluster
// file's servers and place new rooms on it. See README.md.
//
// With -etcd the servers keep their membership in etcd instead of probing
// the cluster file, and with -redis they keep the online status of the
// users, and the rule of one session per user in the whole cluster, in
// Redis:
//
//	go run ./example/chat -etcd http://127.0.0.1:2379 -redis 127.0.0.1:6379
//
// Flags, each also read from an environment variable:
//
//	-cluster path              POMELO_CLUSTER: the cluster file (default: the embedded one)
//	-servers id,id             POMELO_SERVERS: the servers to run (default: every server not optional)
//	-web addr                  POMELO_WEB: the web page's address, "off" for none
//	                           (default 127.0.0.1:3001 when a gate runs here)
//	-admin addr                POMELO_ADMIN: the first server's admin listener (/metrics,
//	                           /healthz, /readyz), the next servers at the next ports; "off"
//	                           for none (default 127.0.0.1:3002 for the whole embedded
//	                           cluster in one process, otherwise ports the system picks)
//	-heartbeat 3s              POMELO_HEARTBEAT: the heartbeat interval
//	-heartbeat-timeout d       POMELO_HEARTBEAT_TIMEOUT: close a silent client (default 2 x heartbeat)
//	-handshake-timeout 10s     POMELO_HANDSHAKE_TIMEOUT: time to complete the handshake
//	-max-conns 10000           POMELO_MAX_CONNS: client connections per frontend, -1 for no cap
//	-resume-window 30s         POMELO_RESUME_WINDOW: how long a dropped client's session waits
//	                           for it to resume, 0 for none
//	-min-client-version 0.0.1  POMELO_MIN_CLIENT_VERSION: older clients get code 501
//	-probe 1s                  POMELO_PROBE: how often other servers are probed
//	-etcd url,url              POMELO_ETCD: keep the membership in this etcd
//	-etcd-prefix p             POMELO_ETCD_PREFIX: its key prefix (default /pomelo-chat/servers/)
//	-redis host:port           POMELO_REDIS: keep online status in this Redis
//	-redis-prefix p            POMELO_REDIS_PREFIX: its key prefix (default pomelo-chat:)
//	-v                         POMELO_VERBOSE: debug logs
//
// POMELO_SECRET, when set, replaces the cluster file's secret.
//
// The example's protos are in proto/chat/v1; regenerate gen/ after editing
// them, from the repository root, with
//
//	go generate ./...
//
// which runs, for this package, the command below (buf with the example's
// workspace and template).
package main

//go:generate go -C ../.. tool -modfile=tools/go.mod buf generate --config example/chat/buf.yaml --template example/chat/buf.gen.yaml --path example/chat/proto/chat
