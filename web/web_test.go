package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/chatd/chatd/web"
)

// assetVersion reads the asset version from the page's own links.
func assetVersion(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	m := regexp.MustCompile(`/static/([0-9a-f]{12})/app\.js`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("the page links no versioned app.js:\n%s", rec.Body.String())
	}
	return m[1]
}

func TestHandler(t *testing.T) {
	h := web.Handler()
	v := assetVersion(t, h)
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		contentType        string
		cache              string // Cache-Control, when the status is 200 or 304
		bodyHas            string
	}{
		{name: "page", path: "/", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache", bodyHas: `<script type="module" src="/static/` + v + `/app.js">`},
		{name: "page by name", path: "/index.html", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache"},
		{name: "head of the page", method: http.MethodHead, path: "/", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache"},
		{name: "module", path: "/static/" + v + "/app.js", status: 200, contentType: "text/javascript; charset=utf-8", cache: "public, max-age=31536000, immutable", bodyHas: "import"},
		{name: "imported module", path: "/static/" + v + "/client.js", status: 200, contentType: "text/javascript; charset=utf-8", cache: "public, max-age=31536000, immutable"},
		{name: "style", path: "/static/" + v + "/app.css", status: 200, contentType: "text/css; charset=utf-8", cache: "public, max-age=31536000, immutable"},
		{name: "icon", path: "/static/" + v + "/icon.svg", status: 200, contentType: "image/svg+xml", cache: "public, max-age=31536000, immutable"},
		{name: "asset of another version", path: "/static/0123456789ab/app.js", status: 200, contentType: "text/javascript; charset=utf-8", cache: "no-cache"},
		{name: "no such asset", path: "/static/" + v + "/nope.js", status: 404, contentType: "application/json"},
		{name: "no version", path: "/static/app.js", status: 404, contentType: "application/json"},
		{name: "page under static", path: "/static/" + v + "/index.html", status: 404, contentType: "application/json"},
		{name: "nested path", path: "/static/" + v + "/a/app.js", status: 404, contentType: "application/json"},
		{name: "dot dot", path: "/static/" + v + "/../app.js", status: 404, contentType: "application/json"},
		{name: "unknown page", path: "/admin", status: 404, contentType: "application/json"},
		{name: "post", method: http.MethodPost, path: "/", status: 405, contentType: "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, tt.path, nil)
			for k, val := range tt.header {
				req.Header.Set(k, val)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			if ct := res.Header.Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			if tt.status == 200 && res.Header.Get("Cache-Control") != tt.cache {
				t.Errorf("Cache-Control %q, want %q", res.Header.Get("Cache-Control"), tt.cache)
			}
			if tt.status != 200 {
				var e struct{ Error, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || e.Message == "" {
					t.Errorf("error body %q is not {error, message}", body)
				}
				if tt.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow %q", res.Header.Get("Allow"))
				}
			}
			if method == http.MethodHead && len(body) != 0 {
				t.Errorf("HEAD has a body of %d bytes", len(body))
			}
			if !strings.Contains(string(body), tt.bodyHas) {
				t.Errorf("body lacks %q", tt.bodyHas)
			}
			for _, hdr := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"} {
				if res.Header.Get(hdr) == "" {
					t.Errorf("no %s", hdr)
				}
			}
		})
	}
}

// TestHandlerRevalidation: an ETag comes with every file, and a browser
// that has the file gets 304 with no body.
func TestHandlerRevalidation(t *testing.T) {
	h := web.Handler()
	v := assetVersion(t, h)
	for _, path := range []string{"/", "/static/" + v + "/app.js"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		etag := rec.Header().Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{16}"$`).MatchString(etag) {
			t.Fatalf("%s: ETag %q", path, etag)
		}
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("If-None-Match", etag)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("%s with If-None-Match: %d, %d bytes; want 304 and none", path, rec.Code, rec.Body.Len())
		}
	}
}

// TestHandlerPolicy: the Content-Security-Policy allows nothing but the
// page's own origin and Trusted Types, and never echoes a Host that could
// add a source.
func TestHandlerPolicy(t *testing.T) {
	h := web.Handler()
	tests := []struct {
		host    string
		connect string
	}{
		{"chat.example:8080", "connect-src 'self' ws://chat.example:8080 wss://chat.example:8080;"},
		{"[::1]:8080", "connect-src 'self' ws://[::1]:8080 wss://[::1]:8080;"},
		{"evil.example; script-src *", "connect-src 'self';"},
		{"a b", "connect-src 'self';"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Host = tt.host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, tt.connect) {
			t.Errorf("Host %q: policy %q lacks %q", tt.host, csp, tt.connect)
		}
		for _, want := range []string{"default-src 'none'", "script-src 'self';", "require-trusted-types-for 'script'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("Host %q: policy %q lacks %q", tt.host, csp, want)
			}
		}
		if strings.Count(csp, "script-src") != 1 {
			t.Errorf("Host %q added a directive: %q", tt.host, csp)
		}
	}
}

// TestIndexReferencesEmbeddedFiles: every asset the page links is served.
func TestIndexReferencesEmbeddedFiles(t *testing.T) {
	h := web.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	links := regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(rec.Body.String(), -1)
	if len(links) < 3 {
		t.Fatalf("only %d asset links in the page", len(links))
	}
	for _, l := range links {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, l[1], nil))
		if rec.Code != 200 {
			t.Errorf("%s: %d", l[1], rec.Code)
		}
	}
}

// FuzzHandler: any path, method and Host gets an answer from the handler's
// small set, never a panic, and an error is always the JSON body.
func FuzzHandler(f *testing.F) {
	for _, seed := range []string{"/", "/index.html", "/static/0123456789ab/app.js", "/static/", "/static//", "/static/x/../../etc/passwd", "/%2e%2e/", "/static/\x00/app.js"} {
		f.Add(http.MethodGet, seed, "localhost:8080")
	}
	f.Add(http.MethodPost, "/", "a b")
	h := web.Handler()
	f.Fuzz(func(t *testing.T, method, path, host string) {
		req, err := http.NewRequest(method, "http://x/", nil)
		if err != nil {
			return // not a method net/http can carry
		}
		req.URL.Path = path
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusNotModified:
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			var e struct{ Error string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Errorf("%s %q: error body %q", method, path, rec.Body.String())
			}
		default:
			t.Errorf("%s %q: status %d", method, path, rec.Code)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if strings.Count(csp, ";") != 10 || strings.Count(csp, "script-src") != 1 {
			t.Errorf("Host %q changed the policy's shape: %q", host, csp)
		}
	})
}
