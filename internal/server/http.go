package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ratelimit"
)

// writeError writes the JSON error body of PROTOCOL.md §1.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(code, msg))
}

// errorBody is the body of every HTTP error chatd sends (PROTOCOL.md §1),
// {"error":"<code>","message":"<msg>"} and a newline.
func errorBody(code, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error": code, "message": msg}) // strings always marshal
	return append(b, '\n')
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": s.cfg.NodeID})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": s.cfg.NodeID})
}

// handlePublish is the server-side publish API for backends: POST
// /api/rooms/{room}/messages with a token whose scope has chat:admin and
// a body {"text": "...", "cid": "...", "from": "...", "name": "..."}. from
// and name default to the token's sub and name.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	room := chi.URLParam(r, "room")
	if !protocol.ValidRoom(room) {
		writeError(w, http.StatusBadRequest, "bad_request", "room must match ^[A-Za-z0-9_.:-]{1,64}$")
		return
	}
	token, _ := auth.TokenFromRequest(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="chatd"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "a bearer token with scope chat:admin is required")
		return
	}
	claims, err := s.verifier.Verify(token)
	if err != nil {
		reason := auth.Reason(err)
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="chatd", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "token refused: "+reason)
		return
	}
	if !claims.Admin {
		writeError(w, http.StatusForbidden, "forbidden", "the token lacks scope chat:admin")
		return
	}
	var body struct {
		Text string `json:"text"`
		CID  string `json:"cid"`
		From string `json:"from"`
		Name string `json:"name"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.ReadLimit))
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body must be a JSON object with text: "+err.Error())
		return
	}
	switch {
	case body.Text == "" || !utf8.ValidString(body.Text):
		writeError(w, http.StatusBadRequest, "bad_request", "text must be non-empty UTF-8")
		return
	case len(body.Text) > s.cfg.MaxText:
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "text is too long")
		return
	case len(body.CID) > protocol.MaxCIDLen:
		writeError(w, http.StatusBadRequest, "bad_request", "cid is longer than 64 bytes")
		return
	}
	if body.From == "" {
		body.From = claims.Subject
	}
	if body.Name == "" {
		body.Name = displayName(claims)
	}
	ctx, cancel := context.WithTimeout(r.Context(), brokerTimeout)
	defer cancel()
	m, dup, err := s.broker.Publish(ctx, protocol.Message{Room: room, From: body.From, Name: body.Name, Text: body.Text, CID: body.CID})
	if err != nil {
		if errors.Is(err, hub.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the message service is temporarily unavailable; retry")
			return
		}
		s.log.Error().Err(err).Str("room", room).Msg("publish API failed")
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	status := http.StatusCreated
	if dup {
		status = http.StatusOK
	}
	s.metrics.messagesIn.Inc()
	writeJSON(w, status, map[string]any{"room": m.Room, "id": m.ID, "ts": m.TS, "duplicate": dup})
}

// handleDevTokenInfo answers GET /api/dev/token: {"dev": true} when POST
// signs tokens, {"dev": false} otherwise. It is always a 200, so that a
// page that asks learns the answer without a failed request in the
// browser's console.
func (s *Server) handleDevTokenInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"dev": s.signer != nil})
}

// handleDevToken signs a token for a name, for the browser client's sign
// in. It exists in dev mode (no key configured) and with DevTokens (a
// configured secret). Anyone may ask, so it is rate-limited per client
// address.
func (s *Server) handleDevToken(w http.ResponseWriter, r *http.Request) {
	if ok, retry := s.devTokens.Allow(s.clientIPs.ClientIP(r), time.Now()); !ok {
		s.metrics.rateLimited.WithLabelValues("dev_token").Inc()
		w.Header().Set("Retry-After", ratelimit.RetryAfterSeconds(retry))
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many token requests from your address; retry after Retry-After seconds")
		return
	}
	var body struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", `body must be {"name": "..."}`)
		return
	}
	name := strings.TrimSpace(body.Name)
	if name == "" || utf8.RuneCountInString(name) > 64 || !utf8.ValidString(name) {
		writeError(w, http.StatusBadRequest, "bad_request", "name must be 1 to 64 characters")
		return
	}
	ttl := time.Hour
	token, err := s.signer.Sign(auth.TokenSpec{Subject: name, Name: name, TTL: ttl})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "could not sign a token")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "user": name, "name": name, "exp": time.Now().Add(ttl).Unix()})
}

// Middleware.

// recoverer turns a panic in a handler into a logged 500 instead of a
// dropped connection with a stack on stderr.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error().Interface("panic", v).Str("path", r.URL.Path).Bytes("stack", debug.Stack()).Msg("handler panicked")
				writeError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status; Unwrap keeps Hijack reachable for
// http.ResponseController, which the WebSocket upgrade needs.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (sr *statusRecorder) WriteHeader(code int) {
	if sr.status == 0 {
		sr.status = code
	}
	sr.ResponseWriter.WriteHeader(code)
}

func (sr *statusRecorder) Unwrap() http.ResponseWriter { return sr.ResponseWriter }

// requestLog logs each request: path only, never the query (it may hold
// an access token).
// debugEnabled reports whether l writes debug events (its level and
// zerolog's global level allow them).
func debugEnabled(l zerolog.Logger) bool {
	return l.GetLevel() <= zerolog.DebugLevel && zerolog.GlobalLevel() <= zerolog.DebugLevel
}

func (s *Server) requestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sr := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(sr, r)
		status := sr.status
		if status == 0 {
			status = http.StatusOK
		}
		ev := s.log.Debug()
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && r.URL.Path != "/metrics" && r.URL.Path != "/ws" {
			ev = s.log.Info()
		}
		if r.URL.Path == "/ws" && status == http.StatusOK {
			status = http.StatusSwitchingProtocols // upgraded; the session goes on on its own goroutine
		}
		ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", status).Dur("took", time.Since(start)).Msg("request")
	})
}
