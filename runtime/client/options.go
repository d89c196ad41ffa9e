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
