// Command wsecho is a WebSocket echo server on internal/ws, for pointing
// conformance suites (Autobahn and the like) and interop tests at chatd's
// WebSocket implementation. It serves every path and echoes each text or
// binary message back unchanged, with the same opcode.
//
//	wsecho -addr 127.0.0.1:9001              # permessage-deflate offered by the client is accepted
//	wsecho -addr 127.0.0.1:9001 -deflate=false
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsecho:", err)
		os.Exit(2)
	}
	if err := serve(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wsecho:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	addr      string
	deflate   bool
	readLimit int64
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("wsecho", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:9001", "listen address, host:port (port 0 picks a free one)")
	fs.BoolVar(&cfg.deflate, "deflate", true, "negotiate permessage-deflate when the client offers it")
	// Autobahn's case 9 sends messages of 16 MiB.
	fs.Int64Var(&cfg.readLimit, "read-limit", 64<<20, "largest message accepted, in bytes")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.readLimit <= 0 {
		return cfg, fmt.Errorf("-read-limit must be positive, not %d", cfg.readLimit)
	}
	if _, _, err := net.SplitHostPort(cfg.addr); err != nil {
		return cfg, fmt.Errorf("-addr %q: %w", cfg.addr, err)
	}
	return cfg, nil
}

// serve serves until ctx ends. It logs the address it listens on (useful
// with port 0) to stderr.
func serve(ctx context.Context, cfg config, stderr io.Writer) error {
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another -addr)", cfg.addr, err)
	}
	logger := log.New(stderr, "", log.LstdFlags)
	logger.Printf("wsecho: serving on ws://%s (permessage-deflate %v, read limit %d bytes)", ln.Addr(), cfg.deflate, cfg.readLimit)
	srv := &http.Server{
		Handler:           Handler(cfg.deflate, cfg.readLimit),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logger,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		// Shutdown does not wait for hijacked (WebSocket) connections;
		// they end with the process.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		<-errc
		return nil
	}
}

// Handler returns the echo handler: every path, any origin, compression
// when deflate and the client offers it, messages up to readLimit bytes.
func Handler(deflate bool, readLimit int64) http.Handler {
	opts := &ws.AcceptOptions{
		Options:     ws.Options{ReadLimit: readLimit},
		Compression: deflate,
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, opts)
		if err != nil {
			return // Accept answered the refusal
		}
		echo(c)
	})
}

// echo sends every message back with its type until the connection ends.
func echo(c *ws.Conn) {
	// ReadMessage closes the connection when it fails; a failed write
	// (a peer that stopped reading) must not leave it open either.
	defer c.CloseNow()
	var buf []byte
	for {
		typ, msg, err := c.ReadMessage(buf[:0])
		if err != nil {
			return
		}
		if err := c.WriteMessage(typ, msg); err != nil {
			return
		}
		if cap(msg) <= 1<<20 {
			buf = msg // reuse, but do not hold on to huge buffers
		} else {
			buf = nil
		}
	}
}
