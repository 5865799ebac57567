package coordinator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/proctest"
)

// A supervised plugin that keeps taking memory is killed over its limit
// and reported as such: in GET /v1/supervised and by a lifecycle event,
// not as a mystery crash.
func TestPluginOverItsMemoryLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("resource limits are enforced on Linux only")
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "plugbus.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`data_dir: %s/data
plugins:
  - name: hog
    exec: %s/hog
    limits:
      memory: 96MiB
      open_files: 256
`, dir, binDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &deployment{t: t, config: config, natsAddr: proctest.FreeAddr(t), httpAddr: proctest.FreeAddr(t)}
	d.start()
	d.waitRunning(map[string]int{"hog": 1}, 30*time.Second)

	nc, err := nats.Connect("nats://" + d.natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	killed, err := nc.SubscribeSync("plugbus.events.coordinator." + bus.TypePluginKilled)
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	// Each request makes it hold 16 MiB more; the coordinator kills it
	// somewhere past 96 MiB, and the request in flight then fails.
	for i := 0; i < 40; i++ {
		resp, err := http.Post("http://"+d.httpAddr+"/v1/invoke/com.example.hog.grow?timeout=5s", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound && i < 10 {
			// Listed a moment before its answering endpoint subscribed.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			break
		}
	}
	msg, err := killed.NextMsg(30 * time.Second)
	if err != nil {
		d.logMu.Lock()
		defer d.logMu.Unlock()
		t.Fatalf("no %s event: %v\n%s", bus.TypePluginKilled, err, d.log.String())
	}
	e, err := bus.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ Plugin, Instance, Limit, Reason string }
	if err := e.DataAs(&ev); err != nil || ev.Plugin != "hog" || ev.Instance != "hog-1" || ev.Limit != "memory" || !strings.Contains(ev.Reason, "limit 96.0 MiB") {
		t.Errorf("lifecycle event %s (%v): want hog-1 killed over its memory limit of 96.0 MiB", e.Data(), err)
	}

	var sup []struct {
		Instance string
		LastExit *struct{ Reason, Limit string } `json:"last_exit"`
	}
	d.waitFor("the exit in /v1/supervised", 10*time.Second, func() error {
		resp, err := http.Get("http://" + d.httpAddr + "/v1/supervised")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&sup); err != nil {
			return err
		}
		if len(sup) != 1 || sup[0].LastExit == nil || sup[0].LastExit.Limit != "memory" || !strings.Contains(sup[0].LastExit.Reason, "over its memory limit") {
			return fmt.Errorf("supervised: %+v", sup)
		}
		return nil
	})
	// And it is running again.
	d.waitRunning(map[string]int{"hog": 1}, 30*time.Second)
	d.logMu.Lock()
	log := d.log.String()
	d.logMu.Unlock()
	if !strings.Contains(log, "plugin killed: over its memory limit") || !strings.Contains(log, `"limits":"memory 96.0 MiB resident`) {
		t.Errorf("the coordinator's log does not say what the limits are and why it killed the plugin:\n%s", log)
	}
}
