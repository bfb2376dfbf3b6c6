package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

func dial(t *testing.T, url string, compress bool) *ws.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ws.Dial(ctx, url, &ws.DialOptions{Compression: compress, Options: ws.Options{ReadLimit: 64 << 20}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// echoes sends text and binary messages from 0 bytes to 16 MiB (Autobahn
// case 9's largest) and checks each comes back unchanged, same opcode.
func echoes(t *testing.T, c *ws.Conn) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20} {
		bin := make([]byte, n)
		for i := range bin {
			bin[i] = byte(rng.Uint32())
		}
		text := bytes.Repeat([]byte("héllo wörld "), n/13+1)[:0]
		for len(text)+len("héllo wörld ") <= n {
			text = append(text, "héllo wörld "...)
		}
		text = append(text, strings.Repeat("!", n-len(text))...)
		for _, m := range []struct {
			typ ws.MessageType
			p   []byte
		}{{ws.Text, text}, {ws.Binary, bin}} {
			if err := c.WriteMessage(m.typ, m.p); err != nil {
				t.Fatalf("write %d-byte %s: %v", n, m.typ, err)
			}
			typ, got, err := c.ReadMessage(nil)
			if err != nil || typ != m.typ || !bytes.Equal(got, m.p) {
				t.Fatalf("echo of %d-byte %s: %s of %d bytes, %v", n, m.typ, typ, len(got), err)
			}
		}
	}
}

// TestHandler runs the echo handler in-process, with and without
// compression, on several paths.
func TestHandler(t *testing.T) {
	for _, deflate := range []bool{true, false} {
		t.Run(fmt.Sprint("deflate=", deflate), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(Handler(deflate, 64<<20))
			t.Cleanup(srv.Close)
			base := "ws" + strings.TrimPrefix(srv.URL, "http")
			for _, path := range []string{"/", "/runCase?case=1&agent=chatd", "/deep/path"} {
				c := dial(t, base+path, true)
				if c.Compressed() != deflate {
					t.Fatalf("compression negotiated: %v, want %v", c.Compressed(), deflate)
				}
				if path == "/" {
					echoes(t, c)
				} else if err := c.WriteMessage(ws.Text, []byte(path)); err != nil {
					t.Fatal(err)
				} else if _, got, err := c.ReadMessage(nil); err != nil || string(got) != path {
					t.Fatalf("echo on %s: %q, %v", path, got, err)
				}
				if err := c.Close(ws.StatusNormalClosure, ""); err != nil {
					t.Fatal(err)
				}
			}
			// Over the read limit: 1009.
			small := httptest.NewServer(Handler(deflate, 100))
			t.Cleanup(small.Close)
			c := dial(t, "ws"+strings.TrimPrefix(small.URL, "http"), false)
			c.WriteMessage(ws.Binary, make([]byte, 101))
			if _, _, err := c.ReadMessage(nil); ws.CloseStatus(err) != ws.StatusMessageTooBig {
				t.Fatalf("over the limit: %v, want 1009", err)
			}
			// Not a WebSocket request: a 4xx answer.
			resp, err := http.Get(srv.URL + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 4 {
				t.Fatalf("plain GET answered %s", resp.Status)
			}
		})
	}
}

// TestBurst sends 1000 messages without waiting for their echoes, as
// Autobahn's 12.x and 13.x cases do, while reading the echoes as they come:
// every one comes back, in order, compressed or not.
func TestBurst(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler(true, 64<<20))
	t.Cleanup(srv.Close)
	for _, compress := range []bool{true, false} {
		c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/", compress)
		msg := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("%04d ", i)), i%400) }
		errc := make(chan error, 1)
		go func() {
			for i := range 1000 {
				if err := c.WriteMessage(ws.Text, msg(i)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for i := range 1000 {
			_, got, err := c.ReadMessage(nil)
			if err != nil || !bytes.Equal(got, msg(i)) {
				t.Fatalf("compress=%v: echo %d: %d bytes, %v", compress, i, len(got), err)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		c.Close(ws.StatusNormalClosure, "")
	}
}

// TestFlags checks the flag parsing in-process.
func TestFlags(t *testing.T) {
	tests := []struct {
		args    []string
		want    config
		wantErr string
	}{
		{nil, config{"127.0.0.1:9001", true, 64 << 20}, ""},
		{[]string{"-addr", "127.0.0.1:0", "-deflate=false"}, config{"127.0.0.1:0", false, 64 << 20}, ""},
		{[]string{"-read-limit", "1024"}, config{"127.0.0.1:9001", true, 1024}, ""},
		{[]string{"-read-limit", "0"}, config{}, "must be positive"},
		{[]string{"-addr", "nocolon"}, config{}, "-addr"},
		{[]string{"-nope"}, config{}, "not defined"},
		{[]string{"extra"}, config{}, "unexpected"},
	}
	for _, tc := range tests {
		got, err := parseFlags(tc.args, io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}

// TestBinary builds the real wsecho, runs it with flags, echoes through it,
// and stops it with SIGTERM (by its PID).
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "wsecho")
	goTool, err := exec.LookPath("go")
	if err != nil {
		// go test runs with the toolchain's go on PATH as a rule; if not,
		// the one that built this test.
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		args    []string
		deflate bool
	}{
		{[]string{"-addr", "127.0.0.1:0"}, true},
		{[]string{"-addr", "127.0.0.1:0", "-deflate=false"}, false},
	} {
		cmd := exec.Command(bin, tc.args...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		lines := bufio.NewScanner(stderr)
		addr := ""
		re := regexp.MustCompile(`serving on (ws://[^ ]+)`)
		for lines.Scan() {
			if m := re.FindStringSubmatch(lines.Text()); m != nil {
				addr = m[1]
				break
			}
		}
		go func() {
			io.Copy(io.Discard, stderr)
			exited <- cmd.Wait()
		}()
		if addr == "" {
			cmd.Process.Kill()
			t.Fatalf("%q: no address logged", tc.args)
		}
		c := dial(t, addr+"/", true)
		if c.Compressed() != tc.deflate {
			t.Errorf("%q: compressed %v", tc.args, c.Compressed())
		}
		if err := c.WriteMessage(ws.Text, []byte("through the binary")); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(nil); err != nil || string(got) != "through the binary" {
			t.Fatalf("echo: %q, %v", got, err)
		}
		c.Close(ws.StatusNormalClosure, "")
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%q: exit after SIGTERM: %v", tc.args, err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%q: did not exit after SIGTERM", tc.args)
		}
	}

	// Bad flags: exit status 2 with a message; a busy address: status 1.
	for _, tc := range []struct {
		args   []string
		status int
		msg    string
	}{
		{[]string{"-read-limit", "-5"}, 2, "must be positive"},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-addr", "127.0.0.1:99999"}, 1, "listen"},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != tc.status || !strings.Contains(string(out), tc.msg) {
			t.Errorf("%q: %v, output %q; want status %d mentioning %q", tc.args, err, out, tc.status, tc.msg)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	}
}
