// Command chatd is the chat server. With no flags it is a complete
// single-node server on :8080 with an in-memory broker; with a Redis URL it
// joins a cluster of nodes. `chatd -h` lists every setting and its
// CHATD_* environment variable; `chatd token` prints a token for scripts
// and tests; `chatd version` says which build this is.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/server"
	"github.com/chatd/chatd/internal/ws"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return tokenCommand(args[1:], getenv, stdout, stderr)
		case "cert":
			return certCommand(args[1:], stderr)
		case "healthcheck":
			return healthcheckCommand(args[1:], getenv, stdout, stderr)
		case "version", "-version", "--version":
			return versionCommand(stdout)
		}
	}
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatd: invalid configuration: %v\n", oneLine(err))
		return 2
	}
	log := newLogger(cfg, stderr)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		log.Info().Msg("signal received: draining (send it again to exit at once)")
		cancel()
		if _, ok := <-sigs; ok {
			log.Warn().Msg("second signal: exiting at once")
			os.Exit(1)
		}
	}()

	if err := serve(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("chatd stopped")
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg *config, log zerolog.Logger) error {
	raiseOpenFileLimit(&cfg.srv, log)
	if cfg.pprofAddr != "" {
		wait, err := startPprof(ctx, cfg.pprofAddr, log)
		if err != nil {
			return err
		}
		defer wait()
	}
	be, err := newBackend(cfg, log)
	if err != nil {
		return err
	}
	defer be.Close()

	version := thisBuild()
	srv, err := server.New(cfg.srv, server.Deps{Broker: be.broker, UserLimiter: be.limiter, Logger: log, Web: webHandler(), Version: version})
	if err != nil {
		return err
	}
	switch {
	case srv.DevMode():
		log.Warn().Msg("DEV MODE: no CHATD_JWT_SECRET or CHATD_JWT_PUBLIC_KEY configured; tokens are signed with a random secret and POST /api/dev/token hands them out to anyone. Configure a key before exposing this server.")
	case srv.DevTokens():
		log.Warn().Msg("DEV TOKENS: CHATD_DEV_TOKENS is on; POST /api/dev/token hands out tokens signed with CHATD_JWT_SECRET to anyone, valid on every node that shares the secret. For test clusters only: turn it off before exposing this server.")
	}
	// No TCP keepalive: a WebSocket is pinged by chatd itself (heartbeat,
	// pong timeout) and an idle HTTP connection is closed by its idle
	// timeout, so the kernel's probes would only repeat that, and turning
	// them on costs four system calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another process using it? set -addr or CHATD_ADDR)", cfg.addr, err)
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	ws.SetBatchRing(cfg.ioUring)
	fanoutWrites := "write(2)"
	if ws.BatchRing() {
		fanoutWrites = "io_uring"
	}
	log.Info().Str("addr", ln.Addr().String()).Str("broker", be.kind).Str("fanout_writes", fanoutWrites).
		Str("version", version).
		Msgf("chatd listening: %s://%s", scheme, displayAddr(ln.Addr()))
	return srv.Serve(ctx, ln, cfg.tlsCert, cfg.tlsKey)
}

func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if ok && tcp.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", tcp.Port)
	}
	return a.String()
}

// raiseOpenFileLimit lifts the soft open-file limit to the hard one, and
// derives the default connection cap from it, so that a full node answers
// 503 rather than failing accept with EMFILE.
func raiseOpenFileLimit(s *server.Config, log zerolog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if s.MaxConns == 0 && lim.Cur > 512 {
		s.MaxConns = int64(lim.Cur) - 256
	}
	log.Debug().Uint64("open_files", lim.Cur).Int64("max_conns", s.MaxConns).Msg("limits")
}

func newLogger(cfg *config, out io.Writer) zerolog.Logger {
	level, _ := zerolog.ParseLevel(cfg.logLevel)
	var w io.Writer = out
	console := cfg.logFormat == "console"
	if cfg.logFormat == "auto" {
		if f, ok := out.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				console = true
			}
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("node", cfg.srv.NodeID).Logger()
}

// oneLine joins a multi-error into one line.
func oneLine(err error) string {
	msg := err.Error()
	out := make([]byte, 0, len(msg))
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\n' {
			out = append(out, ';', ' ')
			continue
		}
		out = append(out, msg[i])
	}
	return string(out)
}
