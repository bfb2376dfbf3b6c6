package auth_test

import (
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/chatd/chatd/internal/auth"
)

func TestTokenFromRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		url        string
		headers    [][2]string // in order; repeated names add header lines
		wantToken  string
		wantSource string
	}{
		{name: "none", url: "/ws"},
		{name: "header", url: "/ws", headers: [][2]string{{"Authorization", "Bearer h.h.h"}}, wantToken: "h.h.h", wantSource: auth.SourceHeader},
		{name: "header scheme lower case", url: "/ws", headers: [][2]string{{"Authorization", "bearer h.h.h"}}, wantToken: "h.h.h", wantSource: auth.SourceHeader},
		{name: "header scheme upper case, extra spaces", url: "/ws", headers: [][2]string{{"Authorization", "  BEARER   h.h.h  "}}, wantToken: "h.h.h", wantSource: auth.SourceHeader},
		{name: "header tab separator", url: "/ws", headers: [][2]string{{"Authorization", "Bearer\th.h.h"}}, wantToken: "h.h.h", wantSource: auth.SourceHeader},
		{name: "header basic scheme ignored", url: "/ws?access_token=q.q.q", headers: [][2]string{{"Authorization", "Basic YTpi"}}, wantToken: "q.q.q", wantSource: auth.SourceQuery},
		{name: "header bearer without token ignored", url: "/ws?access_token=q.q.q", headers: [][2]string{{"Authorization", "Bearer "}}, wantToken: "q.q.q", wantSource: auth.SourceQuery},
		{name: "header scheme only", url: "/ws", headers: [][2]string{{"Authorization", "Bearer"}}},
		{name: "header Bearerx is not Bearer", url: "/ws", headers: [][2]string{{"Authorization", "Bearerx h.h.h"}}},
		{name: "second Authorization line", url: "/ws", headers: [][2]string{{"Authorization", "Basic YTpi"}, {"Authorization", "Bearer h.h.h"}}, wantToken: "h.h.h", wantSource: auth.SourceHeader},
		{name: "subprotocol", url: "/ws", headers: [][2]string{{"Sec-WebSocket-Protocol", "chat, access_token.s.s.s"}}, wantToken: "s.s.s", wantSource: auth.SourceSubprotocol},
		{name: "subprotocol first", url: "/ws", headers: [][2]string{{"Sec-WebSocket-Protocol", "access_token.s.s.s,chat"}}, wantToken: "s.s.s", wantSource: auth.SourceSubprotocol},
		{name: "subprotocol with spaces and tabs", url: "/ws", headers: [][2]string{{"Sec-WebSocket-Protocol", " chat ,\t access_token.s.s.s \t, other"}}, wantToken: "s.s.s", wantSource: auth.SourceSubprotocol},
		{name: "subprotocol in second header line", url: "/ws", headers: [][2]string{{"Sec-WebSocket-Protocol", "chat"}, {"Sec-WebSocket-Protocol", "v2, access_token.s.s.s"}}, wantToken: "s.s.s", wantSource: auth.SourceSubprotocol},
		{name: "subprotocol empty token ignored", url: "/ws?access_token=q.q.q", headers: [][2]string{{"Sec-WebSocket-Protocol", "chat, access_token."}}, wantToken: "q.q.q", wantSource: auth.SourceQuery},
		{name: "subprotocol prefix is case-sensitive", url: "/ws", headers: [][2]string{{"Sec-WebSocket-Protocol", "chat, Access_Token.s.s.s"}}},
		{name: "query", url: "/ws?access_token=q.q.q", wantToken: "q.q.q", wantSource: auth.SourceQuery},
		{name: "query escaped", url: "/ws?room=a&access_token=q%2Eq.q", wantToken: "q.q.q", wantSource: auth.SourceQuery},
		{name: "query empty", url: "/ws?access_token="},
		{
			name: "header beats subprotocol and query", url: "/ws?access_token=q.q.q",
			headers:   [][2]string{{"Authorization", "Bearer h.h.h"}, {"Sec-WebSocket-Protocol", "chat, access_token.s.s.s"}},
			wantToken: "h.h.h", wantSource: auth.SourceHeader,
		},
		{
			name: "subprotocol beats query", url: "/ws?access_token=q.q.q",
			headers:   [][2]string{{"Sec-WebSocket-Protocol", "chat, access_token.s.s.s"}},
			wantToken: "s.s.s", wantSource: auth.SourceSubprotocol,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", tt.url, nil)
			for _, h := range tt.headers {
				r.Header.Add(h[0], h[1])
			}
			tok, src := auth.TokenFromRequest(r)
			if tok != tt.wantToken || src != tt.wantSource {
				t.Fatalf("TokenFromRequest = (%q, %q), want (%q, %q)", tok, src, tt.wantToken, tt.wantSource)
			}
		})
	}
}

func TestOfferedSubprotocols(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"none", nil, nil},
		{"chat only", []string{"chat"}, []string{"chat"}},
		{"token removed", []string{"chat, access_token.a.b.c"}, []string{"chat"}},
		{"only a token", []string{"access_token.a.b.c"}, nil},
		{"empty token entry removed too", []string{"access_token., chat"}, []string{"chat"}},
		{"spaces, tabs, empty entries", []string{" v2 ,, \tchat\t , access_token.x.y.z ,"}, []string{"v2", "chat"}},
		{"several header lines, order kept", []string{"v2", "access_token.x.y.z, chat", "v3"}, []string{"v2", "chat", "v3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/ws", nil)
			for _, l := range tt.lines {
				r.Header.Add("Sec-WebSocket-Protocol", l)
			}
			if got := auth.OfferedSubprotocols(r); !slices.Equal(got, tt.want) {
				t.Fatalf("OfferedSubprotocols = %q, want %q", got, tt.want)
			}
			for _, name := range []string{"chat", "v2", "v3", "access_token.a.b.c", "access_token.", "", " chat"} {
				if got, want := auth.OffersSubprotocol(r, name), slices.Contains(tt.want, name); got != want {
					t.Fatalf("OffersSubprotocol(%q) = %v, want %v", name, got, want)
				}
			}
		})
	}
}
