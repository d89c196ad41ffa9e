package client

import (
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"maps"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
)

// Defaults of the options.
const (
	// DefaultClientType is the sys.type sent in the handshake.
	DefaultClientType = "go-client"
	// DefaultClientVersion is the sys.version sent in the handshake.
	DefaultClientVersion = "0.1.0"
	// DefaultMaxPackageSize is the largest package body accepted from the server.
	DefaultMaxPackageSize = 4 << 20
	// DefaultWriteTimeout bounds one write to the connection.
	DefaultWriteTimeout = 10 * time.Second
)

// Option configures a Client in Dial.
type Option func(*options)

type options struct {
	serializer    runtime.Serializer
	user          json.RawMessage
	clientType    string
	clientVersion string
	dictVersion   string
	dict          map[string]uint16
	heartbeat     bool
	maxPackage    int
	tlsConfig     *tls.Config
	writeTimeout  time.Duration
	logger        *slog.Logger
}

func defaultOptions() options {
	return options{
		serializer:    runtime.JSON,
		clientType:    DefaultClientType,
		clientVersion: DefaultClientVersion,
		heartbeat:     true,
		maxPackage:    DefaultMaxPackageSize,
		writeTimeout:  DefaultWriteTimeout,
		logger:        slog.New(slog.DiscardHandler),
	}
}

// WithSerializer sets the body serializer (default runtime.JSON). Its name is sent in the
// handshake as sys.serializer ("json" or "protobuf"); Dial fails if the server's reply names a
// different one.
func WithSerializer(s runtime.Serializer) Option {
	return func(o *options) {
		if s != nil {
			o.serializer = s
		}
	}
}

// WithHandshakeUser sets the "user" object of the handshake, handed to the server's
// application handshake hook (default {}).
func WithHandshakeUser(user json.RawMessage) Option {
	return func(o *options) { o.user = append(json.RawMessage(nil), user...) }
}

// WithClientInfo sets sys.type and sys.version of the handshake, which the server's client
// check reads (default "go-client" and "0.1.0").
func WithClientInfo(typ, version string) Option {
	return func(o *options) { o.clientType, o.clientVersion = typ, version }
}

// WithDictVersion sets sys.dictVersion of the handshake: the version of the route dictionary
// the client claims to hold. A server that has the same version leaves the dictionary out of
// its reply; without WithDict the client then sends routes uncompressed and cannot decode
// compressed pushes.
func WithDictVersion(version string) Option {
	return func(o *options) { o.dictVersion = version }
}

// WithDict gives the client a cached route dictionary and its version. The version is sent as
// sys.dictVersion; when the server's reply leaves the dictionary out, this one is used. A
// dictionary in the reply always wins.
func WithDict(version string, dict map[string]uint16) Option {
	return func(o *options) { o.dictVersion, o.dict = version, maps.Clone(dict) }
}

// WithHeartbeat turns heartbeats on or off (default on). When on, the client behaves as the
// JS client: it answers each server HEARTBEAT with one of its own after the handshake's
// heartbeat interval, and closes the connection with ErrHeartbeatTimeout when nothing arrives
// from the server for twice that interval. When off it never sends a heartbeat and never
// times out, so that tests can watch the server's heartbeat timeout.
func WithHeartbeat(on bool) Option {
	return func(o *options) { o.heartbeat = on }
}

// WithMaxPackageSize sets the largest package body accepted from the server (default
// DefaultMaxPackageSize). A larger package closes the connection.
func WithMaxPackageSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxPackage = n
		}
	}
}

// WithTLSConfig sets the TLS configuration for "wss://" and "tls://" addresses.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(o *options) { o.tlsConfig = cfg }
}

// WithWriteTimeout bounds each write to the connection (default DefaultWriteTimeout). A write
// that times out closes the connection, since part of a package may have been sent.
func WithWriteTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.writeTimeout = d
		}
	}
}

// WithLogger sets a logger for what the client drops: pushes it cannot decode or route,
// responses nobody waits for any more (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}
