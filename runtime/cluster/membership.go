// Package cluster holds what a user chooses about a pomelo-go cluster: its
// membership (a static list, a cluster file, its servers probed so that
// routing skips those down: NewProbed, or a Registrar such as
// runtime/etcdmember), the servers' entries (ServerInfo), route functions,
// and the session events and locator the App takes. The App of the root
// package (github.com/pomelo-go/pomelo) joins servers with these; the
// plumbing (forwarding, the sys services, watches, cross-frontend push) is
// internal.
package cluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ServerInfo describes one server of the cluster.
type ServerInfo struct {
	// ID is unique in the cluster.
	ID string `json:"id"`
	// Type is the server type ("connector", "chat").
	Type string `json:"type"`
	// Host is the address other servers and clients reach it at.
	Host string `json:"host"`
	// RPCPort serves the sys services and user remotes.
	RPCPort int `json:"rpcPort"`
	// Frontend servers hold client connections.
	Frontend bool `json:"frontend,omitempty"`
	// WSPort and TCPPort are a frontend's client ports (0 for none).
	WSPort  int `json:"wsPort,omitempty"`
	TCPPort int `json:"tcpPort,omitempty"`
	// Metadata is free-form.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// RPCAddr returns host:rpcPort.
func (s ServerInfo) RPCAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.RPCPort)) }

// Validate checks the fields every server needs.
func (s ServerInfo) Validate() error {
	switch {
	case s.ID == "":
		return errors.New("cluster: server without an id")
	case s.Type == "" || strings.ContainsAny(s.Type, ". \t"):
		return fmt.Errorf("cluster: server %s: bad type %q", s.ID, s.Type)
	case s.Host == "":
		return fmt.Errorf("cluster: server %s: no host", s.ID)
	case s.RPCPort <= 0 || s.RPCPort > 65535:
		return fmt.Errorf("cluster: server %s: bad rpcPort %d", s.ID, s.RPCPort)
	}
	return nil
}

// File is the static cluster file: every server of the cluster and the
// shared secret servers authenticate each other with.
type File struct {
	// Secret authenticates servers to each other; every server of the
	// cluster must have the same. The App refuses an empty one unless its
	// Config.Insecure is set.
	Secret string `json:"secret,omitempty"`
	// Servers lists the members.
	Servers []ServerInfo `json:"servers"`
}

// LoadFile reads a JSON cluster file.
func LoadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseFile(b)
}

// ParseFile parses a JSON cluster file and validates it.
func ParseFile(b []byte) (*File, error) {
	var f File
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("cluster file: %w", err)
	}
	seen := map[string]bool{}
	for _, s := range f.Servers {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("cluster file: %w", err)
		}
		if seen[s.ID] {
			return nil, fmt.Errorf("cluster file: server id %q appears twice", s.ID)
		}
		seen[s.ID] = true
	}
	return &f, nil
}

// Server returns the server with id.
func (f *File) Server(id string) (ServerInfo, bool) {
	for _, s := range f.Servers {
		if s.ID == id {
			return s, true
		}
	}
	return ServerInfo{}, false
}

// Membership tells a server which servers are in the cluster.
type Membership interface {
	// Servers returns the current members.
	Servers() []ServerInfo
	// Subscribe calls fn with the whole member list after every change,
	// until the returned function is called. An implementation may also
	// call fn at once with the current list (so that no change between
	// Servers and Subscribe is missed).
	Subscribe(fn func([]ServerInfo)) (cancel func())
}

// Registrar is a Membership that servers join and leave themselves (etcd).
type Registrar interface {
	Membership
	// Register adds self to the cluster and keeps it there.
	Register(self ServerInfo) error
	// Deregister removes self, before the server stops serving.
	Deregister() error
}

// Static is a membership that changes only when told to: the static cluster
// file, and tests that add and remove servers by hand. It is safe for
// concurrent use.
type Static struct {
	mu      sync.Mutex
	servers []ServerInfo
	subs    subscribers
}

// NewStatic returns a static membership of servers.
func NewStatic(servers ...ServerInfo) *Static {
	return &Static{servers: sortServers(slices.Clone(servers))}
}

func sortServers(s []ServerInfo) []ServerInfo {
	slices.SortFunc(s, func(a, b ServerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return s
}

// Servers implements Membership.
func (st *Static) Servers() []ServerInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.servers)
}

// Subscribe implements Membership.
func (st *Static) Subscribe(fn func([]ServerInfo)) func() { return st.subs.add(fn) }

// Add adds or replaces a server and notifies subscribers.
func (st *Static) Add(s ServerInfo) {
	st.mu.Lock()
	st.servers = slices.DeleteFunc(st.servers, func(o ServerInfo) bool { return o.ID == s.ID })
	st.servers = sortServers(append(st.servers, s))
	st.notifyLocked()
}

// Remove removes a server and notifies subscribers.
func (st *Static) Remove(id string) {
	st.mu.Lock()
	st.servers = slices.DeleteFunc(st.servers, func(o ServerInfo) bool { return o.ID == id })
	st.notifyLocked()
}

// notifyLocked unlocks st.mu and calls the subscribers.
func (st *Static) notifyLocked() {
	list := slices.Clone(st.servers)
	subs := st.subs.list()
	st.mu.Unlock()
	for _, fn := range subs {
		fn(list)
	}
}

// subscribers are the functions Membership.Subscribe was given. They are
// listed under the membership's lock, so that the lists they are called
// with follow each other in the order of the changes, and called after it
// is released. Its zero value is empty and ready to use.
type subscribers struct {
	mu   sync.Mutex
	fns  map[int]func([]ServerInfo)
	next int
}

// add subscribes fn until the returned function is called.
func (s *subscribers) add(fn func([]ServerInfo)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = map[int]func([]ServerInfo){}
	}
	id := s.next
	s.next++
	s.fns[id] = fn
	return func() {
		s.mu.Lock()
		delete(s.fns, id)
		s.mu.Unlock()
	}
}

// list returns the subscribed functions.
func (s *subscribers) list() []func([]ServerInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.fns))
}
