// Package testservers starts real Redis and etcd servers for tests: on free
// loopback ports, in temporary directories, stopped afterwards. When a
// binary is not on the PATH the test is skipped, or fails under
// POMELO_TEST_REQUIRE (see internal/testenv).
//
// A test package shares one server of each kind (SharedRedis, SharedEtcd),
// started on first use; its TestMain calls Main so that the shared servers
// stop when the tests end. Tests isolate their data with Prefix. A test
// that stops or restarts its server starts a dedicated one (StartRedis,
// StartEtcd), stopped when the test ends.
//
// The server processes are also killed if the test binary dies (Linux), so
// an interrupted test run leaves nothing behind.
package testservers

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/pomelo-go/pomelo/internal/testenv"
)

// startTimeout bounds how long a server may take to accept clients.
const startTimeout = 30 * time.Second

// proc is one server process: its command line, directory and log. It
// can be started again after it stopped.
type proc struct {
	name string // "redis", "etcd"
	bin  string
	args []string
	dir  string
	log  string
	// ready reports whether the server accepts clients.
	ready func() bool

	mu  sync.Mutex
	cur *run // nil when not running
}

// run is one execution of a proc.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd's exit status, valid once done is closed
}

// start runs the process and waits until it is ready.
func (p *proc) start() error {
	p.mu.Lock()
	if p.cur != nil {
		p.mu.Unlock()
		return fmt.Errorf("testservers: %s already running", p.name)
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		logf.Close()
		return fmt.Errorf("testservers: start %s: %w", p.name, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	p.cur = r
	p.mu.Unlock()
	go func() {
		r.err = cmd.Wait()
		logf.Close()
		close(r.done)
	}()
	deadline := time.Now().Add(startTimeout)
	for !p.ready() {
		select {
		case <-r.done:
			p.mu.Lock()
			if p.cur == r {
				p.cur = nil
			}
			p.mu.Unlock()
			return fmt.Errorf("testservers: %s exited at start (%v):\n%s", p.name, r.err, p.tail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("testservers: %s not ready after %v:\n%s", p.name, startTimeout, p.tail())
		}
	}
	return nil
}

// take detaches the current run, if any.
func (p *proc) take() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.cur
	p.cur = nil
	return r
}

// stop ends the process (SIGTERM, then SIGKILL after 10s) and waits for it.
func (p *proc) stop() {
	r := p.take()
	if r == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() error {
	r := p.take()
	if r == nil {
		return errNotRunning
	}
	r.cmd.Process.Kill()
	<-r.done
	return nil
}

// tail returns the end of the process log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Redis is a redis-server listening on a loopback port, without
// persistence.
type Redis struct {
	// Addr is host:port.
	Addr string
	p    *proc
}

// StartRedis starts a dedicated Redis that is stopped when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := testenv.LookPath(t, "redis", "redis-server")
	r, err := startRedis(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func startRedis(bin, dir string) (*Redis, error) {
	var err error
	for range 3 { // a port picked free may be taken before the server binds it
		var ports []int
		if ports, err = freePorts(1); err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		p := &proc{
			name: "redis-server",
			bin:  bin,
			dir:  dir,
			log:  dir + "/redis.log",
			args: []string{
				"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir,
				"--daemonize", "no", "--loglevel", "warning",
			},
			ready: func() bool { return redisPing(addr) },
		}
		if err = p.start(); err == nil {
			return &Redis{Addr: addr, p: p}, nil
		}
	}
	return nil, err
}

// redisPing reports whether a Redis at addr answers PING.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Stop stops the server and waits for it to exit.
func (r *Redis) Stop() { r.p.stop() }

// Etcd is a single-member etcd cluster listening on loopback ports.
type Etcd struct {
	// Endpoint is the client URL ("http://127.0.0.1:port").
	Endpoint string
	// DataDir keeps the data across Stop and Start.
	DataDir string
	p       *proc
}

// StartEtcd starts a dedicated etcd that is stopped when the test ends.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin := testenv.LookPath(t, "etcd", "etcd")
	e, err := startEtcd(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

func startEtcd(bin, dir string) (*Etcd, error) {
	var err error
	for range 3 {
		var ports []int
		if ports, err = freePorts(2); err != nil {
			return nil, err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		data := dir + "/data"
		p := &proc{
			name: "etcd",
			bin:  bin,
			dir:  dir,
			log:  dir + "/etcd.log",
			args: []string{
				"--name", "test",
				"--data-dir", data,
				"--listen-client-urls", client,
				"--advertise-client-urls", client,
				"--listen-peer-urls", peer,
				"--initial-advertise-peer-urls", peer,
				"--initial-cluster", "test=" + peer,
				"--initial-cluster-state", "new",
				"--log-level", "error",
			},
			ready: func() bool { return etcdHealthy(client) },
		}
		if err = p.start(); err == nil {
			return &Etcd{Endpoint: client, DataDir: data, p: p}, nil
		}
		os.RemoveAll(data)
	}
	return nil, err
}

// etcdHealthy reports whether the etcd at endpoint has a leader and serves.
func etcdHealthy(endpoint string) bool {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get(endpoint + "/health")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var b [256]byte
	n, _ := res.Body.Read(b[:])
	return res.StatusCode == http.StatusOK && strings.Contains(string(b[:n]), `"true"`)
}

// Stop stops the server (SIGTERM) and waits for it to exit. Its data stays
// for Start.
func (e *Etcd) Stop() { e.p.stop() }

// Start starts a stopped server again, on the same ports and data
// directory, and waits until it serves.
func (e *Etcd) Start() error { return e.p.start() }

// WipeData deletes the data of a stopped server, as a disk lost with it
// would: the next Start begins a new, empty cluster.
func (e *Etcd) WipeData() error {
	if e.Running() {
		return errors.New("testservers: wipe the data of a running etcd")
	}
	return os.RemoveAll(e.DataDir)
}

// Shared servers: one of each kind per test binary.
var shared struct {
	mu    sync.Mutex
	dir   string
	redis *Redis
	etcd  *Etcd
	err   map[string]error
}

func sharedDir() (string, error) {
	if shared.dir == "" {
		d, err := os.MkdirTemp("", "pomelo-testservers-")
		if err != nil {
			return "", err
		}
		shared.dir = d
	}
	return shared.dir, nil
}

// SharedRedis returns the test binary's Redis, starting it on first use.
// The package's TestMain must call Main to stop it.
func SharedRedis(t testing.TB) *Redis {
	t.Helper()
	bin := testenv.LookPath(t, "redis", "redis-server")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.redis == nil && shared.err["redis"] == nil {
		dir, err := sharedDir()
		if err == nil {
			err = os.MkdirAll(dir+"/redis", 0o700)
		}
		if err == nil {
			shared.redis, err = startRedis(bin, dir+"/redis")
		}
		setErr("redis", err)
	}
	if err := shared.err["redis"]; err != nil {
		t.Fatal(err)
	}
	return shared.redis
}

// SharedEtcd returns the test binary's etcd, starting it on first use. The
// package's TestMain must call Main to stop it. Tests must not stop it.
func SharedEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin := testenv.LookPath(t, "etcd", "etcd")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.etcd == nil && shared.err["etcd"] == nil {
		dir, err := sharedDir()
		if err == nil {
			err = os.MkdirAll(dir+"/etcd", 0o700)
		}
		if err == nil {
			shared.etcd, err = startEtcd(bin, dir+"/etcd")
		}
		setErr("etcd", err)
	}
	if err := shared.err["etcd"]; err != nil {
		t.Fatal(err)
	}
	return shared.etcd
}

func setErr(kind string, err error) {
	if err == nil {
		return
	}
	if shared.err == nil {
		shared.err = map[string]error{}
	}
	shared.err[kind] = err
}

// StopShared stops the shared servers and removes their directory.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.redis != nil {
		shared.redis.Stop()
		shared.redis = nil
	}
	if shared.etcd != nil {
		shared.etcd.Stop()
		shared.etcd = nil
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
		shared.dir = ""
	}
}

// Main runs the tests, stops the shared servers and exits: call it from
// TestMain.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// Prefix returns a key prefix unique to the test (and to this call), for
// isolating its data on a shared server: "t/<test name>/<random>/".
func Prefix(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	name := strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, t.Name())
	return "t/" + name + "/" + hex.EncodeToString(b[:]) + "/"
}

// errNotRunning is returned by operations on a stopped server.
var errNotRunning = errors.New("testservers: server not running")

// Running reports whether the etcd process is running.
func (e *Etcd) Running() bool {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.p.cur != nil
}

// Kill stops the server with SIGKILL, as a crash would. Its data stays for
// Start.
func (e *Etcd) Kill() error { return e.p.kill() }
