package ws_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

// An echo server and a client talking to it, with permessage-deflate.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, &ws.AcceptOptions{Compression: true, Subprotocols: []string{"chat"}})
		if err != nil {
			return // Accept answered the refusal (400, 403, 405 or 426)
		}
		// Serve from a goroutine of its own and return: net/http then lets
		// go of the request and its buffers while the connection idles.
		go func() {
			defer c.CloseNow()
			var buf []byte
			for {
				typ, msg, err := c.ReadMessage(buf[:0])
				if err != nil {
					return // a *ws.CloseError: the peer closed, or the connection failed
				}
				if err := c.WriteMessage(typ, msg); err != nil {
					return
				}
				buf = msg
			}
		}()
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &ws.DialOptions{
		Compression:  true,
		Subprotocols: []string{"chat"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("subprotocol:", c.Subprotocol(), "compressed:", c.Compressed())
	c.WriteMessage(ws.Text, []byte(strings.Repeat("hello ", 50)))
	typ, msg, err := c.ReadMessage(nil)
	fmt.Println(typ, len(msg), err)
	fmt.Println(c.Close(ws.StatusNormalClosure, "bye"))
	_, _, err = c.ReadMessage(nil)
	fmt.Println(ws.CloseStatus(err))
	// Output:
	// subprotocol: chat compressed: true
	// text 300 <nil>
	// <nil>
	// 1000 (normal closure)
}
