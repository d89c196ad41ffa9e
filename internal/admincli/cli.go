package admincli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	sysv1 "github.com/pomelo-go/pomelo/gen/pomelo/sys/v1"
)

// Usage lists the admin commands.
const Usage = `       pomelo servers (--cluster FILE | --etcd URL[,URL...] [--prefix P]) [--secret S] [--timeout D]
       pomelo kick UID [--reason R] (--cluster FILE | --etcd URL) [--secret S]
       pomelo broadcast ROUTE JSON [--bound-only] (--cluster FILE | --etcd URL) [--secret S]
       pomelo client URL [--timeout D]`

// SecretEnv is the environment variable the cluster secret is read from
// when --secret is not given; the cluster file's secret comes last.
const SecretEnv = "POMELO_SECRET"

// Env is what a command reads from its environment.
type Env struct {
	// Stdin is the client REPL's input.
	Stdin io.Reader
	// Stdout and Stderr receive the output and the diagnostics.
	Stdout, Stderr io.Writer
	// Getenv reads an environment variable (os.Getenv).
	Getenv func(string) string
}

// IsCommand reports whether name is one of the commands Run runs.
func IsCommand(name string) bool {
	switch name {
	case "servers", "kick", "broadcast", "client":
		return true
	}
	return false
}

// Run runs the admin command name with its arguments (after the name).
func Run(ctx context.Context, name string, args []string, env Env) error {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if name == "client" {
		return runClient(ctx, args, env)
	}
	fl := flag.NewFlagSet("pomelo "+name, flag.ContinueOnError)
	fl.SetOutput(env.Stderr)
	var t Target
	var etcd string
	fl.StringVar(&t.File, "cluster", "", "the cluster file")
	fl.StringVar(&etcd, "etcd", "", "etcd endpoints, comma-separated, instead of a cluster file")
	fl.StringVar(&t.Prefix, "prefix", "", "the etcd key prefix of the cluster (default "+`"/pomelo/servers/"`+")")
	fl.StringVar(&t.Secret, "secret", "", "the cluster secret (default $"+SecretEnv+", then the cluster file's)")
	fl.DurationVar(&t.Timeout, "timeout", DefaultTimeout, "bound of each call to a server")
	reason, boundOnly := new(string), new(bool)
	switch name {
	case "kick":
		fl.StringVar(reason, "reason", "kick", "the reason the clients see in their KICK")
	case "broadcast":
		fl.BoolVar(boundOnly, "bound-only", false, "push only to sessions bound to a uid")
	}
	pos, err := parse(fl, args)
	if err != nil {
		return err
	}
	want := map[string]int{"servers": 0, "kick": 1, "broadcast": 2}[name]
	if len(pos) != want {
		return fmt.Errorf("usage:\n%s", Usage)
	}
	if etcd != "" {
		t.Etcd = strings.Split(etcd, ",")
	}
	if t.Secret == "" {
		t.Secret = env.Getenv(SecretEnv)
	}
	var payload *sysv1.Payload
	if name == "broadcast" {
		if payload, err = JSONPayload([]byte(pos[1])); err != nil {
			return err
		}
	}
	servers, secret, err := t.Resolve(ctx)
	if err != nil {
		return err
	}
	c := NewConn(secret, t.Timeout)
	defer c.Close()
	switch name {
	case "servers":
		PrintServers(env.Stdout, c.Servers(ctx, servers))
		return nil
	case "kick":
		return report(env, c.Kick(ctx, servers, pos[0], *reason), fmt.Sprintf("kicked %%d session(s) of uid %q", pos[0]))
	default:
		return report(env, c.Broadcast(ctx, servers, pos[0], payload, *boundOnly), fmt.Sprintf("pushed %s to %%d session(s)", pos[0]))
	}
}

// parse parses flags anywhere among the positional arguments.
func parse(fl *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			return nil, err
		}
		if fl.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fl.Arg(0))
		args = fl.Args()[1:]
	}
}

// PrintServers writes the table of `pomelo servers` and a summary line.
func PrintServers(w io.Writer, list []ServerStatus) {
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tFRONTEND\tRPC\tWS\tTCP\tSTATE\tSESSIONS\tBOUND\tNOTE")
	var up, down, unreachable, sessions, bound, fronts int64
	for _, s := range list {
		i := s.Info
		sess, b, note := "-", "-", ""
		switch s.State {
		case StateUp:
			up++
			if s.Status.Frontend {
				fronts++
				sessions += s.Status.Sessions
				bound += s.Status.BoundSessions
				sess, b = fmt.Sprint(s.Status.Sessions), fmt.Sprint(s.Status.BoundSessions)
			}
		case StateDown:
			down++
		default:
			unreachable++
		}
		if s.Err != nil {
			note = s.Err.Error()
		}
		fe := "no"
		if i.Frontend {
			fe = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.Type, fe, port(i.Host, i.RPCPort), port(i.Host, i.WSPort), port(i.Host, i.TCPPort), s.State, sess, b, note)
	}
	tw.Flush()
	for _, line := range strings.SplitAfter(table.String(), "\n") {
		if line != "" {
			fmt.Fprintln(w, strings.TrimRight(line, " \n"))
		}
	}
	fmt.Fprintf(w, "%d server(s): %d up, %d down, %d unreachable; %d session(s), %d bound, on %d frontend(s)\n", len(list), up, down, unreachable, sessions, bound, fronts)
}

// report prints the per-frontend results of kick or broadcast and the
// total (format has one %d). Frontends that are down are skipped with a
// note; any other failure makes it return an error.
func report(env Env, results []Result, format string) error {
	total, failed := 0, 0
	for _, r := range results {
		switch {
		case r.Err == nil:
			total += r.N
			fmt.Fprintf(env.Stdout, "%s: %d\n", r.Server.ID, r.N)
		case r.State == StateDown:
			fmt.Fprintf(env.Stdout, "%s: down (%v), skipped\n", r.Server.ID, r.Err)
		default:
			failed++
			fmt.Fprintf(env.Stderr, "%s: %s: %v\n", r.Server.ID, r.State, r.Err)
		}
	}
	fmt.Fprintf(env.Stdout, format+" on %d frontend(s)\n", total, len(results)-failed)
	if failed > 0 {
		return fmt.Errorf("%d frontend(s) failed", failed)
	}
	if len(results) == 0 {
		return errors.New("the cluster has no frontend")
	}
	return nil
}

// JSONPayload makes a push payload of a JSON text: a google.protobuf.Struct
// for an object, a google.protobuf.Value otherwise. JSON clients receive the
// text itself (compacted), binary protobuf clients the message.
func JSONPayload(text []byte) (*sysv1.Payload, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, text); err != nil {
		return nil, fmt.Errorf("the body is not JSON: %w", err)
	}
	var m proto.Message = &structpb.Struct{}
	if !bytes.HasPrefix(buf.Bytes(), []byte("{")) {
		m = &structpb.Value{}
	}
	if err := protojson.Unmarshal(buf.Bytes(), m); err != nil {
		return nil, fmt.Errorf("the body is not JSON: %w", err)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &sysv1.Payload{Type: string(m.ProtoReflect().Descriptor().FullName()), Proto: b, Json: buf.Bytes()}, nil
}

// clientTimeout bounds the client REPL's connect and each request without
// a --timeout.
const clientTimeout = 10 * time.Second
