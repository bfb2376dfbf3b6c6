package ws

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSmokeEcho(t *testing.T) {
	for _, compress := range []bool{false, true} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := Accept(w, r, &AcceptOptions{Compression: true, Options: Options{ReadLimit: 32 << 20}})
			if err != nil {
				return
			}
			for {
				typ, m, err := c.ReadMessage(nil)
				if err != nil {
					return
				}
				if err := c.WriteMessage(typ, m); err != nil {
					return
				}
			}
		}))
		c, err := Dial(context.Background(), "ws"+srv.URL[4:], &DialOptions{Compression: compress, Options: Options{ReadLimit: 32 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20} {
			msg := bytes.Repeat([]byte("abcdefgh"), n/8+1)[:n]
			if err := c.WriteMessage(Text, msg); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.ReadMessage(nil)
			if err != nil {
				t.Fatal(n, err)
			}
			if typ != Text || !bytes.Equal(got, msg) {
				t.Fatalf("compress=%v n=%d: got %d bytes", compress, n, len(got))
			}
		}
		if err := c.Close(StatusNormalClosure, "bye"); err != nil {
			t.Fatal(err)
		}
		srv.Close()
	}
}
