package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"maps"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
)

// Defaults of the Config fields.
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

// Config configures a Client. Its zero value is the default configuration, the one Dial uses;
// each field documents what its zero value means. A Config may be used for many dials and is
// not modified by them.
type Config struct {
	// Serializer is the body serializer (nil: runtime.JSON). Its name is sent in the handshake
	// as sys.serializer ("json" or "protobuf"); Dial fails if the server's reply names a
	// different one.
	Serializer runtime.Serializer

	// HandshakeUser is the "user" object of the handshake, handed to the server's application
	// handshake hook (nil: {}).
	HandshakeUser json.RawMessage

	// ClientType and ClientVersion are sys.type and sys.version of the handshake, which the
	// server's client check reads ("": DefaultClientType and DefaultClientVersion).
	ClientType    string
	ClientVersion string

	// DictVersion is sys.dictVersion of the handshake: the version of the route dictionary the
	// client claims to hold. A server that has the same version leaves the dictionary out of
	// its reply; the client then uses Dict, or, when Dict is nil, sends routes uncompressed and
	// cannot decode compressed pushes.
	DictVersion string

	// Dict is a cached route dictionary, the one of DictVersion. It is used when the server's
	// reply leaves the dictionary out; a dictionary in the reply always wins.
	Dict map[string]uint16

	// NoHeartbeat turns heartbeats off. By default the client behaves as the JS client: it
	// answers each server HEARTBEAT with one of its own after the handshake's heartbeat
	// interval, and closes the connection with ErrHeartbeatTimeout when nothing arrives from
	// the server for twice that interval. With NoHeartbeat it never sends a heartbeat and
	// never times out, so that tests can watch the server's heartbeat timeout.
	NoHeartbeat bool

	// MaxPackageSize is the largest package body accepted from the server (0:
	// DefaultMaxPackageSize). A larger package closes the connection.
	MaxPackageSize int

	// TLSConfig is the TLS configuration for "wss://" and "tls://" addresses (nil: the
	// crypto/tls defaults).
	TLSConfig *tls.Config

	// WriteTimeout bounds each write to the connection (0: DefaultWriteTimeout). A write that
	// times out closes the connection, since part of a package may have been sent.
	WriteTimeout time.Duration

	// Logger receives what the client drops: pushes it cannot decode or route, responses
	// nobody waits for any more (nil: discard).
	Logger *slog.Logger

	// Resume asks the server for a resumable session (docs/PROTOCOL.md section 10). When
	// the connection then breaks (not a kick, not Close), the client dials the same address
	// again with backoff and resumes the session: the server replays what the client missed,
	// each response and push once and in order, and the client sends again the requests not
	// answered yet (request ids keep counting across connections), so calls in flight just
	// take longer. Calls made while reconnecting wait for the connection. A server without
	// the extension (or with it off) makes this an ordinary session. False: a broken
	// connection ends the Client, as the JS client's does.
	Resume bool

	// ReconnectMinDelay and ReconnectMaxDelay bound the backoff between reconnection
	// attempts: the first is immediate, then the delay doubles from ReconnectMinDelay up to
	// ReconnectMaxDelay, each wait drawn at random from its upper half (0:
	// DefaultReconnectMinDelay, 100ms, and DefaultReconnectMaxDelay, 5s).
	ReconnectMinDelay time.Duration
	ReconnectMaxDelay time.Duration

	// ReconnectTimeout is how long the client keeps trying to reconnect before it gives up:
	// the Client is then finished, with an error wrapping ErrConnectionLost, and StateLost
	// is reported (0: DefaultReconnectTimeout, 30s, the server's default resume window).
	ReconnectTimeout time.Duration

	// OnState, when set, is called with each change of the connection state (connected,
	// reconnecting, resumed, lost), in order, on a goroutine of the client; it must not
	// block.
	OnState func(State)
}

// Dial connects to addr with the default configuration: it is Config{}.Dial.
func Dial(ctx context.Context, addr string) (*Client, error) {
	return Config{}.Dial(ctx, addr)
}

// options is a Config with its defaults filled in.
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

	resume           bool
	minDelay         time.Duration
	maxDelay         time.Duration
	reconnectTimeout time.Duration
	onState          func(State)
}

// options returns cfg with its defaults filled in, holding its own copies of the slices and
// maps so that the caller may change cfg afterwards.
func (cfg Config) options() options {
	o := options{
		serializer:    cfg.Serializer,
		user:          append(json.RawMessage(nil), cfg.HandshakeUser...),
		clientType:    cfg.ClientType,
		clientVersion: cfg.ClientVersion,
		dictVersion:   cfg.DictVersion,
		dict:          maps.Clone(cfg.Dict),
		heartbeat:     !cfg.NoHeartbeat,
		maxPackage:    cfg.MaxPackageSize,
		tlsConfig:     cfg.TLSConfig,
		writeTimeout:  cfg.WriteTimeout,
		logger:        cfg.Logger,

		resume:           cfg.Resume,
		minDelay:         cfg.ReconnectMinDelay,
		maxDelay:         cfg.ReconnectMaxDelay,
		reconnectTimeout: cfg.ReconnectTimeout,
		onState:          cfg.OnState,
	}
	if o.minDelay <= 0 {
		o.minDelay = DefaultReconnectMinDelay
	}
	if o.maxDelay <= 0 {
		o.maxDelay = DefaultReconnectMaxDelay
	}
	o.maxDelay = max(o.maxDelay, o.minDelay)
	if o.reconnectTimeout <= 0 {
		o.reconnectTimeout = DefaultReconnectTimeout
	}
	if o.serializer == nil {
		o.serializer = runtime.JSON
	}
	if o.clientType == "" {
		o.clientType = DefaultClientType
	}
	if o.clientVersion == "" {
		o.clientVersion = DefaultClientVersion
	}
	if o.maxPackage <= 0 {
		o.maxPackage = DefaultMaxPackageSize
	}
	if o.writeTimeout <= 0 {
		o.writeTimeout = DefaultWriteTimeout
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}
