package interop

import (
	"context"
	"errors"
	"net/http"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"github.com/chatd/chatd/internal/ws"
)

// Echo servers. Each echoes every data message with its type, records the
// pings it receives and how the connection ended, and on the text message
// cmdClose starts the closing handshake itself.

// gorillaServer is a gorilla/websocket echo server; compress enables
// permessage-deflate (gorilla only does it without context takeover).
func gorillaServer(log *serverLog, compress bool) http.Handler {
	up := websocket.Upgrader{EnableCompression: compress}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			log.events <- event{err: err}
			return
		}
		defer c.Close()
		c.SetReadLimit(readLimit)
		c.SetPingHandler(func(p string) error {
			log.ping(p)
			// As gorilla's default handler: answer, ignore a failed pong.
			_ = c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(5*time.Second))
			return nil
		})
		closing := false
		for {
			typ, p, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) {
					log.events <- event{err: err}
					return
				}
				// When we started the close, this is the peer's echo.
				log.events <- event{code: ce.Code, reason: ce.Text, remote: !closing, note: "gorilla"}
				return
			}
			if typ == websocket.TextMessage && string(p) == cmdClose {
				closing = true
				msg := websocket.FormatCloseMessage(4002, "server bye")
				if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)); err != nil {
					log.events <- event{err: err}
					return
				}
				continue // read until the peer's close frame
			}
			if err := c.WriteMessage(typ, p); err != nil {
				log.events <- event{err: err}
				return
			}
		}
	})
}

// coderServer is a coder/websocket echo server with the given compression
// mode.
func coderServer(log *serverLog, mode coder.CompressionMode) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{
			CompressionMode: mode,
			OnPingReceived: func(_ context.Context, p []byte) bool {
				log.ping(string(p))
				return true
			},
		})
		if err != nil {
			log.events <- event{err: err}
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(readLimit)
		ctx := r.Context()
		for {
			typ, p, err := c.Read(ctx)
			if err != nil {
				var ce coder.CloseError
				if !errors.As(err, &ce) {
					log.events <- event{err: err}
					return
				}
				log.events <- event{code: int(ce.Code), reason: ce.Reason, remote: true, note: "coder"}
				return
			}
			if typ == coder.MessageText && string(p) == cmdClose {
				// Close completes the handshake: it returns nil only once
				// the peer's close frame arrived.
				err := c.Close(4002, "server bye")
				log.events <- event{code: 4002, reason: "server bye", err: err, note: "coder"}
				return
			}
			if err := c.Write(ctx, typ, p); err != nil {
				log.events <- event{err: err}
				return
			}
		}
	})
}

// oursServer is an internal/ws echo server with Compression on. With the
// query parameter keepalive=1 it sends keepalive pings (PingInterval
// 100 ms, PongTimeout 2 s: generous, for a loaded machine under -race) and
// drops a peer that does not answer.
func oursServer(log *serverLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opts := &ws.AcceptOptions{Compression: true, Options: ws.Options{ReadLimit: readLimit}}
		if r.URL.Query().Get("keepalive") == "1" {
			opts.PingInterval, opts.PongTimeout = 100*time.Millisecond, 2*time.Second
		}
		c, err := ws.Accept(w, r, opts)
		if err != nil {
			log.events <- event{err: err}
			return
		}
		defer c.CloseNow()
		var buf []byte
		for {
			typ, p, err := c.ReadMessage(buf[:0])
			if err != nil {
				var ce *ws.CloseError
				if !errors.As(err, &ce) {
					log.events <- event{err: err}
					return
				}
				log.events <- event{code: int(ce.Code), reason: ce.Reason, remote: ce.Remote, err: ce.Err, note: "ours"}
				return
			}
			buf = p
			if typ == ws.Text && string(p) == cmdClose {
				if err := c.Close(4004, "server bye"); err != nil {
					log.events <- event{err: err}
					return
				}
				// The read side now holds how the handshake ended: a
				// clean one has no underlying error.
				_, _, err := c.ReadMessage(nil)
				var ce *ws.CloseError
				if !errors.As(err, &ce) {
					log.events <- event{err: err}
					return
				}
				log.events <- event{code: int(ce.Code), reason: ce.Reason, remote: ce.Remote, err: ce.Err, note: "ours"}
				return
			}
			if err := c.WriteMessage(typ, p); err != nil {
				log.events <- event{err: err}
				return
			}
		}
	})
}
