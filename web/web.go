// Package web is chatd's browser client: plain HTML, CSS and JavaScript
// modules with no build step, embedded in the binary and served by
// Handler at /. The page speaks the protocol of docs/protocol.md the way a
// client should: the token in a subprotocol rather than the URL, reconnects
// with backoff and full jitter, rejoins with since, retries sends with the
// same cid, and renders every message as text.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// assetPrefix is where the page's assets are served: /static/<version>/
// followed by a file name. The version is a hash of every asset, so an
// asset URL never changes meaning and can be cached for a year, while the
// page itself is revalidated on every load and so picks up a new version
// as soon as the binary changes.
const assetPrefix = "/static/"

// versionToken is replaced in index.html by the asset version.
const versionToken = "__VERSION__"

// contentTypes are set explicitly rather than guessed from the system's
// MIME tables, which differ between machines (a module script served as
// text/plain does not run).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".json": "application/json",
}

type asset struct {
	body        []byte
	etag        string
	contentType string
}

type handler struct {
	version string
	index   asset
	assets  map[string]asset // by file name, without the version
}

// Handler serves the browser client: the page at / (and /index.html) and
// its assets under /static/<version>/. Every response carries a strict
// Content-Security-Policy: scripts, styles and images only from the page's
// own origin, no inline code, Trusted Types enforced (the page never
// assigns HTML), and connections only to the page's own origin over
// http(s) and ws(s). Anything else is a JSON 404, like the server's.
func Handler() http.Handler {
	h, err := newHandler()
	if err != nil {
		panic("web: " + err.Error()) // the embedded files are part of the binary
	}
	return h
}

func newHandler() (*handler, error) {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(sub, ".")
	if err != nil {
		return nil, err
	}
	h := &handler{assets: map[string]asset{}}
	sum := sha256.New()
	var indexBody []byte
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		body, err := fs.ReadFile(sub, e.Name())
		if err != nil {
			return nil, err
		}
		if e.Name() == "index.html" {
			indexBody = body
		} else {
			h.assets[e.Name()] = newAsset(e.Name(), body)
		}
		sum.Write([]byte(e.Name()))
		sum.Write([]byte{0})
		sum.Write(body)
	}
	h.version = hex.EncodeToString(sum.Sum(nil))[:12]
	h.index = newAsset("index.html", bytes.ReplaceAll(indexBody, []byte(versionToken), []byte(h.version)))
	return h, nil
}

func newAsset(name string, body []byte) asset {
	sum := sha256.Sum256(body)
	ct := contentTypes[path.Ext(name)]
	if ct == "" {
		ct = "application/octet-stream"
	}
	return asset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, contentType: ct}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy(r))
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")

	a, cache, ok := h.lookup(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such page")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "the browser client is read with GET")
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Cache-Control", cache)
	hdr.Set("ETag", a.etag)
	// ServeContent answers If-None-Match with 304, HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// Cache policies: the page is revalidated on every load (a cheap 304),
// versioned assets are immutable, and an asset asked for under another
// version (a page loaded before an upgrade) is served but not cached.
const (
	cachePage      = "no-cache"
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheStale     = "no-cache"
)

func (h *handler) lookup(p string) (asset, string, bool) {
	if p == "/" || p == "/index.html" {
		return h.index, cachePage, true
	}
	rest, ok := strings.CutPrefix(p, assetPrefix)
	if !ok {
		return asset{}, "", false
	}
	version, name, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(name, "/") {
		return asset{}, "", false
	}
	a, ok := h.assets[name]
	if !ok {
		return asset{}, "", false
	}
	if version != h.version {
		return a, cacheStale, true
	}
	return a, cacheImmutable, true
}

// contentSecurityPolicy allows the page nothing but its own origin. CSP
// Level 3 lets 'self' match ws: and wss: on the page's own host, but
// older engines do not, so the WebSocket origins are also named.
func contentSecurityPolicy(r *http.Request) string {
	connect := "'self'"
	if validHost(r.Host) {
		connect += " ws://" + r.Host + " wss://" + r.Host
	}
	return "default-src 'none'; " +
		"script-src 'self'; " +
		"style-src 'self'; " +
		"img-src 'self' data:; " +
		"connect-src " + connect + "; " +
		"manifest-src 'self'; " +
		"base-uri 'none'; " +
		"form-action 'none'; " +
		"frame-ancestors 'none'; " +
		"require-trusted-types-for 'script'; " +
		"trusted-types 'none'"
}

// validHost reports whether host (a Host header) is safe to echo into the
// policy: a name or address with an optional port, nothing that could end
// a directive or add a source.
func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// writeError writes the JSON error body every chatd endpoint uses.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}
