package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatd/chatd/internal/ws"
)

// chromiumPath finds the browser: $CHATD_CHROMIUM, else the Debian
// package's /usr/bin/chromium, else chromium or google-chrome on PATH.
func chromiumPath() (string, error) {
	if p := os.Getenv("CHATD_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium, chromium-browser or google-chrome found (set CHATD_CHROMIUM)")
}

// startChromium starts a headless Chromium for the test, with a fresh
// profile, and returns a tab's context. Without a browser the test is
// skipped, except under CI=true, where it fails.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	path, err := chromiumPath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test under CI=true, but %v", err)
		}
		t.Skipf("skipping the browser test: %v (apt-get install chromium)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	// Cancelling the context stops the Chromium process chromedp started
	// (and waits for it), before TempDir removes the profile.
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", path, err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not start within 2 minutes", path)
	}
	return ctx
}

// browserPage is the page the browser loads; the test's script runs in it,
// so the WebSocket is same-origin and Accept's default origin check
// applies.
const browserPage = `<!doctype html><meta charset="utf-8"><title>interop</title>`

// browserScript opens a WebSocket to /ws, checks the negotiated
// extension, and sends text and binary messages of each size, checking
// every echo byte for byte. It resolves to a report.
const browserScript = `(async () => {
  const sizes = %s;
  const ws = new WebSocket("ws://" + location.host + %q);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let waiting = null;
  ws.onmessage = (e) => { inbox.push(e.data); if (waiting) { const w = waiting; waiting = null; w(); } };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("WebSocket error")); });
  const next = async () => {
    const deadline = Date.now() + 60000;
    while (inbox.length === 0) {
      if (Date.now() > deadline) throw new Error("no echo within 60 s");
      await new Promise((r) => { waiting = r; setTimeout(r, 1000); });
    }
    return inbox.shift();
  };
  const text = (n) => {
    const words = ["hello ", "héllo ", "日本語 ", "🙂 ", "{\"type\":\"send\"} ", "x"];
    const enc = new TextEncoder();
    const lens = words.map((w) => enc.encode(w).length);
    const parts = [];
    let size = 0;
    for (let i = 0; ; i++) {
      const k = i %% words.length;
      if (size + lens[k] > n) break;
      parts.push(words[k]);
      size += lens[k];
    }
    return parts.join("") + "y".repeat(n - size);
  };
  const binary = (n) => {
    const b = new Uint8Array(n);
    let x = n + 7;
    for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = (i %% 512 < 256) ? (x >>> 16) & 255 : i & 7; }
    return b;
  };
  const report = { extensions: ws.extensions, protocol: ws.protocol, checked: [], errors: [] };
  for (const n of sizes) {
    const t = text(n);
    ws.send(t);
    const gotT = await next();
    if (typeof gotT !== "string") report.errors.push(n + "-byte text came back binary");
    else if (gotT !== t) report.errors.push(n + "-byte text came back different (" + gotT.length + " chars)");
    else report.checked.push("text:" + n);
    const b = binary(n);
    ws.send(b);
    const gotB = await next();
    if (!(gotB instanceof ArrayBuffer)) report.errors.push(n + "-byte binary came back as text");
    else {
      const g = new Uint8Array(gotB);
      let same = g.length === b.length;
      for (let i = 0; same && i < g.length; i++) same = g[i] === b[i];
      if (same) report.checked.push("binary:" + n); else report.errors.push(n + "-byte binary came back different");
    }
  }
  const closed = new Promise((r) => { ws.onclose = (e) => r(e); });
  ws.close(1000, "done");
  const ev = await closed;
  report.closeCode = ev.code;
  report.closeClean = ev.wasClean;
  return report;
})()`

type browserReport struct {
	Extensions string   `json:"extensions"`
	Protocol   string   `json:"protocol"`
	Checked    []string `json:"checked"`
	Errors     []string `json:"errors"`
	CloseCode  int      `json:"closeCode"`
	CloseClean bool     `json:"closeClean"`
}

// TestChromium: a real headless Chromium, with its own WebSocket object,
// talks to our server with permessage-deflate negotiated, and to one with
// compression off: text and binary echoes of several sizes, byte for byte,
// the extension the browser reports, and a clean close.
func TestChromium(t *testing.T) {
	ctx := startChromium(t)
	sizes := []int{0, 1, 125, 126, 1000, 65535, 65536, 1 << 20, 4 << 20}
	sizesJS := "["
	for i, n := range sizes {
		if i > 0 {
			sizesJS += ","
		}
		sizesJS += fmt.Sprint(n)
	}
	sizesJS += "]"

	for _, mode := range []struct {
		path     string
		compress bool
		wantExt  string
	}{
		{"/deflate", true, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"/plain", false, ""},
	} {
		t.Run(mode.path[1:], func(t *testing.T) {
			type seen struct {
				typ ws.MessageType
				n   int
			}
			var (
				mu         sync.Mutex
				compressed []bool
				received   []seen
				ended      = make(chan error, 1)
			)
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, browserPage)
			})
			mux.HandleFunc(mode.path, func(w http.ResponseWriter, r *http.Request) {
				c, err := ws.Accept(w, r, &ws.AcceptOptions{Compression: mode.compress, Options: ws.Options{ReadLimit: readLimit}})
				if err != nil {
					ended <- err
					return
				}
				defer c.CloseNow()
				mu.Lock()
				compressed = append(compressed, c.Compressed())
				mu.Unlock()
				var buf []byte
				for {
					typ, p, err := c.ReadMessage(buf[:0])
					if err != nil {
						ended <- err
						return
					}
					mu.Lock()
					received = append(received, seen{typ, len(p)})
					mu.Unlock()
					if err := c.WriteMessage(typ, p); err != nil {
						ended <- err
						return
					}
					buf = p
				}
			})
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)

			runCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if err := chromedp.Do(runCtx, chromedp.Navigate(srv.URL+"/")); err != nil {
				t.Fatalf("navigate: %v", err)
			}
			rep, err := chromedp.Run(runCtx, chromedp.Evaluate[browserReport](fmt.Sprintf(browserScript, sizesJS, mode.path), chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("browser script: %v", err)
			}
			t.Logf("Chromium negotiated %q; checked %d echoes", rep.Extensions, len(rep.Checked))
			if rep.Extensions != mode.wantExt {
				t.Errorf("negotiated extensions %q, want %q", rep.Extensions, mode.wantExt)
			}
			for _, e := range rep.Errors {
				t.Error(e)
			}
			if len(rep.Checked) != 2*len(sizes) {
				t.Errorf("checked %v, want %d echoes", rep.Checked, 2*len(sizes))
			}
			if rep.CloseCode != 1000 || !rep.CloseClean {
				t.Errorf("browser saw close %d (clean %v), want a clean 1000", rep.CloseCode, rep.CloseClean)
			}

			select {
			case err := <-ended:
				var ce *ws.CloseError
				if !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "done" || !ce.Remote || ce.Err != nil {
					t.Errorf("server ended with %v, want the browser's clean close 1000 \"done\"", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the server connection did not end")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(compressed) != 1 || compressed[0] != mode.compress {
				t.Errorf("server side compression: %v, want one connection with compression %v", compressed, mode.compress)
			}
			for i, n := range sizes {
				for j, typ := range []ws.MessageType{ws.Text, ws.Binary} {
					k := 2*i + j
					if k >= len(received) || received[k] != (seen{typ, n}) {
						t.Fatalf("server received %v, want the sizes %v as text then binary", received, sizes)
					}
				}
			}
		})
	}
}
