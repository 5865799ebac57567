package coordinator_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/plugbus/plugbus/internal/proctest"
)

// chromium returns the browser the dashboard tests drive: Debian's chromium
// package, which `make browser` installs. It skips the test when none is
// installed.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no chromium to test the dashboard in: run `make browser` (it installs Debian's chromium package) or put chromium on PATH")
	return ""
}

// TestDashboardInABrowser opens the dashboard of a real coordinator running
// the demo's plugins as real processes, in a real headless Chromium, and
// does what an operator does: looks at the plugins, watches an event go
// by, invokes hello, and sees a failure.
func TestDashboardInABrowser(t *testing.T) {
	chrome := chromium(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "plugbus.yaml")
	// As in examples/demo.yaml: archive observes com.example.>, hello's
	// type included, and never answers in hello's place.
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`data_dir: %[1]s/data
plugins:
  - name: hello
    exec: %[2]s/hello
    replicas: 2
  - name: archive
    exec: %[2]s/archive
    args: ["-dir", "%[1]s/archive", "-types", "com.example.>"]
  - name: thumbnail
    exec: %[2]s/thumbnail
    args: ["-out", "%[1]s/thumbnails"]
`, dir, binDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &deployment{t: t, config: config, natsAddr: proctest.FreeAddr(t), httpAddr: proctest.FreeAddr(t)}
	d.start()
	d.waitRunning(map[string]int{"hello": 2, "archive": 1, "thumbnail": 1}, 30*time.Second)
	base := "http://" + d.httpAddr

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1400, 1600))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chrome, err)
	}

	// Every message the page writes to the console, and every uncaught
	// exception and failed request.
	var consoleMu sync.Mutex
	var console []chromedp.ConsoleMessage
	consoleDone := make(chan struct{})
	consoleCtx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(consoleCtx)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			consoleMu.Lock()
			console = append(console, m)
			consoleMu.Unlock()
		}
	}()

	step := func(t *testing.T, what string, within time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			shot(t, ctx, "failed")
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
			t.Fatalf("%s: %v\nthe page reads:\n%s", what, err, page)
		}
	}
	// until waits for a JavaScript condition.
	until := func(t *testing.T, what string, within time.Duration, expr string) {
		t.Helper()
		step(t, what, within, void(chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(within))))
	}

	step(t, "load the dashboard", 30*time.Second, chromedp.Navigate(base+"/"))

	t.Run("shows the demo's plugins", func(t *testing.T) {
		for _, name := range []string{"hello", "archive", "thumbnail"} {
			step(t, "see plugin "+name, 15*time.Second, chromedp.WaitVisible(chromedp.CSS(`#plugins tr[data-plugin="`+name+`"]`)))
		}
		until(t, "hello's two supervised instances", 15*time.Second,
			`document.querySelector('#plugins tr[data-plugin="hello"]').textContent.includes("2/2 running") &&
			 document.querySelector('#plugins tr[data-plugin="hello"]').textContent.includes("2 supervised")`)
		until(t, "hello answering its type, archive nothing", 15*time.Second,
			`(document.querySelector('#plugins tr[data-plugin="hello"] .answers') || {}).textContent === "answers com.example.greet.requested" &&
			 !document.querySelector('#plugins tr[data-plugin="archive"] .answers')`)
		until(t, "thumbnail's description", 15*time.Second,
			`document.querySelector('#plugins tr[data-plugin="thumbnail"]').textContent.includes("makes PNG thumbnails of uploaded images")`)
		// Its instances, a page of them, with mode and host.
		step(t, "open hello's instances", 10*time.Second, clickJS(`#plugins tr[data-plugin="hello"]`))
		until(t, "hello's instance list", 10*time.Second,
			`document.querySelectorAll('#instances-of tbody tr').length === 2 && document.querySelector('#instances-of').textContent.includes("supervised")`)
	})

	t.Run("shows a published event in the live stream within a second", func(t *testing.T) {
		until(t, "the live stream to subscribe", 15*time.Second, `document.getElementById("ev-status").textContent.includes("watching")`)
		// The page notes when each row appears, on the same clock as ours.
		step(t, "watch rows appear", 5*time.Second, void(chromedp.Evaluate[any](`
			window.seen = {};
			new MutationObserver(() => {
				for (const tr of document.querySelectorAll("#events tbody tr")) {
					if (tr.dataset.id && !(tr.dataset.id in window.seen)) window.seen[tr.dataset.id] = Date.now();
				}
			}).observe(document.querySelector("#events tbody"), { childList: true });
			true`)))
		id := fmt.Sprintf("browser-%d", time.Now().UnixNano())
		published := time.Now()
		if code, body := postEvent(t, d.httpAddr, id, "com.example.browser.checked", `{"from":"the browser test"}`); code != http.StatusAccepted {
			t.Fatalf("POST /v1/events: %d %s", code, body)
		}
		until(t, "the event in the live stream", 15*time.Second, `"`+id+`" in window.seen`)
		shownAt, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.seen["`+id+`"]`))
		if err != nil {
			t.Fatal(err)
		}
		if took := time.UnixMilli(int64(shownAt)).Sub(published); took > time.Second {
			t.Errorf("the event appeared %v after it was published, want within 1s", took)
		} else {
			t.Logf("the event appeared %v after it was published", took)
		}
		text, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`#events tr[data-id="`+id+`"]`)))
		if err != nil || !strings.Contains(text, "com.example.browser.checked") || !strings.Contains(text, "the browser test") || !strings.Contains(text, "http") {
			t.Errorf("the event's row reads %q (%v), want its type, producer and data", text, err)
		}
	})

	t.Run("publishes from the form", func(t *testing.T) {
		step(t, "publish", 10*time.Second,
			chromedp.SetValue(chromedp.ID("pub-type"), "com.example.browser.formed"),
			chromedp.SetValue(chromedp.ID("pub-data"), `{"via":"the publish form"}`),
			clickJS(`#publish button`))
		until(t, "the publish answer", 10*time.Second, `document.getElementById("result").textContent.includes("202")`)
		until(t, "the published event in the live stream", 10*time.Second,
			`[...document.querySelectorAll("#events tbody tr")].some(tr => tr.dataset.type === "com.example.browser.formed")`)
	})

	t.Run("invokes hello from the form and shows the answer", func(t *testing.T) {
		step(t, "invoke", 10*time.Second,
			chromedp.SetValue(chromedp.ID("inv-type"), "com.example.greet.requested"),
			chromedp.SetValue(chromedp.ID("inv-data"), `{"name":"browser"}`),
			clickJS(`#invoke button`))
		until(t, "hello's answer", 15*time.Second,
			`document.getElementById("result").className === "ok" && document.getElementById("result").textContent.includes("hello, browser")`)
		// The answer is published as an event too, after the reply: it
		// shows in the live stream (and its row moves the forms below, so
		// the next click waits for it).
		until(t, "hello's answer in the live stream", 15*time.Second,
			`[...document.querySelectorAll("#events tbody tr")].some(tr => tr.dataset.type === "com.example.greet.sent" && tr.textContent.includes("hello, browser"))`)
	})

	t.Run("shows a failure when a handler fails", func(t *testing.T) {
		// thumbnail wants an absolute path: a relative one is bad data,
		// which its handler rejects. (hello's data is checked against its
		// schema at the door, so its handler never sees bad data.)
		step(t, "invoke with bad data", 10*time.Second,
			chromedp.SetValue(chromedp.ID("inv-type"), "com.example.image.uploaded"),
			chromedp.SetValue(chromedp.ID("inv-data"), `{"path":"relative.png"}`),
			clickJS(`#invoke button`))
		until(t, "the plugin's error", 15*time.Second,
			`document.getElementById("result").className === "error" && document.getElementById("result").dataset.status.startsWith("4") &&
			 document.getElementById("result").textContent.includes("plugin_error")`)
		// The failure counts in thumbnail's row, from its instances' counters.
		until(t, "thumbnail's failed count", 15*time.Second,
			`(document.querySelector('#plugins tr[data-plugin="thumbnail"] .fail') || {}).textContent === "1 failed"`)
		until(t, "the type's failed count", 15*time.Second,
			`[...document.querySelectorAll("#types tbody tr")].some(tr => tr.textContent.startsWith("com.example.image.uploaded") && tr.querySelector(".fail"))`)
	})

	t.Run("lists agents and the plugins run on order", func(t *testing.T) {
		step(t, "open the agents section", 10*time.Second, clickJS(`#agents-section summary`))
		until(t, "the agents section's answer", 15*time.Second,
			`document.getElementById("agents-status").textContent === "0 agent(s)" &&
			 document.getElementById("agents").textContent.includes("no agents") &&
			 document.getElementById("orders").textContent.includes("no plugins started with coordinator run")`)
	})

	shot(t, ctx, "dashboard")
	stopConsole()
	<-consoleDone
	consoleMu.Lock()
	defer consoleMu.Unlock()
	for _, m := range console {
		t.Logf("console: %s", m)
		// The one failure the test causes on purpose: the browser logs the
		// invoke's 422 as a failed request.
		expected := m.Source == "network" && strings.Contains(m.URL, "/v1/invoke/") && strings.Contains(m.Text, "422")
		if (m.Type == chromedp.ConsoleError || m.IsException()) && !expected {
			t.Errorf("the page wrote an error to the console: %s (%s:%d)", m, m.URL, m.Line)
		}
	}
}

// shot saves a screenshot of the page as a test artifact (kept with go
// test -artifacts) and logs where.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", path)
}

// void turns an action that returns a value into one that returns none.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// clickJS clicks the element selector names from the page's script: the
// page redraws its tables every second, and a mouse click aimed at where an
// element was may land on whatever moved there.
func clickJS(selector string) chromedp.Action[chromedp.Void] {
	return void(chromedp.Evaluate[bool](`(() => { document.querySelector(` + strconv.Quote(selector) + `).click(); return true })()`))
}
