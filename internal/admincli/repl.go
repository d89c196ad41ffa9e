package admincli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pomelo-go/pomelo/runtime"
	"github.com/pomelo-go/pomelo/runtime/client"
)

// replHelp is what `help` prints.
const replHelp = `commands:
  request ROUTE [JSON]   send a request (body {} when omitted) and print the response
  notify ROUTE [JSON]    send a notify
  quit                   close the connection and exit (so does the end of the input)
pushes are printed as they arrive: push ROUTE JSON`

func runClient(ctx context.Context, args []string, env Env) error {
	fl := flag.NewFlagSet("pomelo client", flag.ContinueOnError)
	fl.SetOutput(env.Stderr)
	timeout := fl.Duration("timeout", clientTimeout, "bound of the connect and of each request")
	pos, err := parse(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage:\n%s", Usage)
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	return REPL(ctx, pos[0], env.Stdin, env.Stdout, *timeout)
}

// REPL connects to url (ws://, wss://, tcp:// or tls://) with the JSON
// serializer and runs the commands read from in, one a line (see replHelp),
// writing responses, errors and pushes to out, until `quit`, the end of in,
// ctx ending or the server closing the connection (a kick is printed). A
// command that fails prints "error: ..." and the REPL goes on.
func REPL(ctx context.Context, url string, in io.Reader, out io.Writer, timeout time.Duration) error {
	w := &syncWriter{w: out}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	c, err := client.Config{Serializer: runtime.JSON, ClientType: "pomelo-cli", ClientVersion: "1"}.Dial(dctx, url)
	cancel()
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer func() {
		c.Close()
		w.stop() // nothing is written after REPL returns
	}()
	c.OnAnyPush(func(route string, body []byte) {
		w.printf("push %s %s\n", route, body)
	})
	w.printf("connected to %s (type help for the commands)\n", url)

	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-c.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	for {
		var line string
		select {
		case line = <-lines:
		case err := <-readErr:
			return err // the end of the input
		case <-c.Done():
			return disconnected(w, c.Err())
		case <-ctx.Done():
			return ctx.Err()
		}
		quit, err := command(ctx, c, w, line, timeout)
		if quit {
			return nil
		}
		if err != nil {
			if c.Err() != nil {
				return disconnected(w, c.Err())
			}
			w.printf("error: %v\n", err)
		}
	}
}

// disconnected reports the end of the connection; a kick is not an error
// of the REPL.
func disconnected(w *syncWriter, err error) error {
	var kick *client.KickError
	if errors.As(err, &kick) {
		w.printf("kicked: %s\n", kick.Reason)
		return nil
	}
	w.printf("disconnected: %v\n", err)
	return err
}

// command runs one line.
func command(ctx context.Context, c *client.Client, w *syncWriter, line string, timeout time.Duration) (quit bool, err error) {
	verb, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	route, body, _ := strings.Cut(strings.TrimSpace(rest), " ")
	body = strings.TrimSpace(body)
	if body == "" {
		body = "{}"
	}
	switch verb {
	case "":
		return false, nil
	case "quit", "exit":
		return true, nil
	case "help":
		w.printf("%s\n", replHelp)
		return false, nil
	case "request", "notify":
	default:
		return false, fmt.Errorf("unknown command %q (type help)", verb)
	}
	if route == "" {
		return false, fmt.Errorf("%s needs a route", verb)
	}
	if !json.Valid([]byte(body)) {
		return false, errors.New("the body is not JSON")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if verb == "notify" {
		return false, c.NotifyRaw(ctx, route, []byte(body))
	}
	res, isErr, err := c.RequestRaw(ctx, route, []byte(body))
	if err != nil {
		return false, err
	}
	if isErr {
		e, derr := runtime.DecodeErrorBody(runtime.SerializerJSON, res)
		if derr != nil {
			return false, fmt.Errorf("undecodable error response %s: %w", res, derr)
		}
		w.printf("error %s %s\n", route, e.Error())
		return false, nil
	}
	var buf bytes.Buffer
	if json.Compact(&buf, res) == nil {
		res = buf.Bytes()
	}
	w.printf("response %s %s\n", route, res)
	return false, nil
}

// syncWriter serializes the REPL's output (responses on the REPL's
// goroutine, pushes on the client's) and drops it once stopped.
type syncWriter struct {
	mu      sync.Mutex
	w       io.Writer
	stopped bool
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		fmt.Fprintf(s.w, format, args...)
	}
}

func (s *syncWriter) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}
