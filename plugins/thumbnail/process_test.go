package thumbnail

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/internal/proctest"
)

// Three instances of the binary share the uploaded events: every event is
// handled once, by one of them, and more than one of them works.
func TestProcessInstancesShareTheLoad(t *testing.T) {
	bin := proctest.Build(t, "./cmd/thumbnail")
	srv := bustest.NewServer(t)
	nc := bustest.Connect(t, srv)
	out := t.TempDir()

	const instances = 3
	started, err := nc.SubscribeSync(bus.DefaultPrefix + ".events." + Name + "." + bus.TypePluginStarted)
	if err == nil {
		err = nc.Flush() // the server has the subscription before the instances start
	}
	if err != nil {
		t.Fatal(err)
	}
	type proc struct {
		cmd    *exec.Cmd
		logs   *proctest.Output
		exited chan error
		reaped bool // exited was read
	}
	var procs []*proc
	for i := range instances {
		cmd := exec.Command(bin, "-out", out, "-size", "32", "-log-format", "text")
		cmd.Env = append(os.Environ(), "PLUGBUS_URL="+srv.ClientURL(), fmt.Sprintf("PLUGBUS_INSTANCE=worker-%d", i+1))
		p := &proc{cmd: cmd, logs: &proctest.Output{}, exited: make(chan error, 1)}
		cmd.Stdout, cmd.Stderr = p.logs, p.logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.exited <- cmd.Wait() }()
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		for i, p := range procs {
			if !p.reaped {
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
			if t.Failed() {
				t.Logf("instance %d output:\n%s", i+1, p.logs.String())
			}
		}
	})
	// Each instance announces itself once it is subscribed.
	for i := range instances {
		if _, err := started.NextMsg(15 * time.Second); err != nil {
			t.Fatalf("%d of %d instances announced that they started: %v", i, instances, err)
		}
	}

	results := make(chan *nats.Msg, 100)
	sub, err := nc.ChanSubscribe(bus.DefaultPrefix+".events."+Name+"."+TypeThumbnailed, results)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const n = 30
	sent := map[string]bool{}
	for i := range n {
		e := imageEvent("image/png", encode(t, "png", testImage(64+i, 48)))
		sent[e.ID()] = true
		if err := bus.Publish(nc, bus.DefaultPrefix, "uploader", e); err != nil {
			t.Fatal(err)
		}
	}
	perInstance := map[string]int{}
	done := map[string]bool{}
	timeout := time.After(15 * time.Second)
	for len(done) < n {
		select {
		case msg := <-results:
			e, err := bus.Decode(msg)
			if err != nil {
				t.Fatal(err)
			}
			var th Thumbnail
			if err := json.Unmarshal(e.Data(), &th); err != nil {
				t.Fatal(err)
			}
			if !sent[th.SourceID] || done[th.SourceID] {
				t.Fatalf("thumbnail for %q: not sent, or handled twice", th.SourceID)
			}
			done[th.SourceID] = true
			perInstance[th.Instance]++
			if th.Width != 32 || th.SourceHeight != 48 {
				t.Errorf("thumbnail %+v: want width 32 from height 48", th)
			}
		case <-timeout:
			t.Fatalf("%d of %d thumbnails after 15s", len(done), n)
		}
	}
	t.Logf("events per instance: %v", perInstance)
	if len(perInstance) < 2 {
		t.Errorf("one instance did all the work: %v", perInstance)
	}
	for inst := range perInstance {
		if inst != "worker-1" && inst != "worker-2" && inst != "worker-3" {
			t.Errorf("instance %q is not one of PLUGBUS_INSTANCE worker-1..3", inst)
		}
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Errorf("%d files in the output directory, want %d thumbnails", len(entries), n)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".png" || e.Name()[0] == '.' {
			t.Errorf("unexpected file %s in the output directory", e.Name())
		}
	}

	for i, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-p.exited:
			p.reaped = true
			if err != nil {
				t.Errorf("instance %d exited with %v after SIGTERM; want status 0", i+1, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("instance %d still running 10s after SIGTERM", i+1)
		}
	}
}
