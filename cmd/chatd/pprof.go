package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"
)

// startPprof serves net/http/pprof on addr, on a listener of its own so
// that the profiles are never reachable through the public port. It is
// off unless -pprof is set; bind it to loopback (127.0.0.1:6060), since
// a profile shows the heap's contents. The server stops when ctx ends; the
// returned function waits for that.
func startPprof(ctx context.Context, addr string, log zerolog.Logger) (wait func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: listen on %s: %w (set -pprof or CHATD_PPROF)", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("pprof server stopped")
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = hs.Close() })
	log.Info().Str("addr", ln.Addr().String()).Msg("pprof listening: /debug/pprof/")
	return func() {
		stop()
		_ = hs.Close()
		<-done
	}, nil
}
