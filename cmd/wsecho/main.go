// Command wsecho is a WebSocket echo server on internal/ws, for pointing
// conformance suites (Autobahn and the like) and interop tests at chatd's
// WebSocket implementation. It serves every path and echoes each text or
// binary message back unchanged, with the same opcode.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
	addr := flag.String("addr", "127.0.0.1:9001", "listen address, host:port")
	deflate := flag.Bool("deflate", true, "negotiate permessage-deflate when the client offers it")
	readLimit := flag.Int64("read-limit", 64<<20, "largest message accepted, in bytes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *deflate, *readLimit); err != nil {
		fmt.Fprintln(os.Stderr, "wsecho:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, deflate bool, readLimit int64) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another -addr)", addr, err)
	}
	log.Printf("wsecho: serving on ws://%s (permessage-deflate %v)", ln.Addr(), deflate)
	srv := &http.Server{Handler: Handler(deflate, readLimit), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}

// Handler returns the echo handler.
func Handler(deflate bool, readLimit int64) http.Handler {
	opts := &ws.AcceptOptions{
		Options:     ws.Options{ReadLimit: readLimit},
		Compression: deflate,
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, opts)
		if err != nil {
			return
		}
		echo(c)
	})
}

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
