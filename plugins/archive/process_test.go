package archive

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/internal/proctest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Events published before SIGTERM are all in the archive once the process
// has exited: it drains the subscription, waits for its handlers, and syncs
// the file.
func TestProcessArchivesEverythingBeforeSIGTERM(t *testing.T) {
	bin := proctest.Build(t, "./cmd/archive")
	srv := bustest.NewServer(t)
	nc := bustest.Connect(t, srv)
	dir := t.TempDir()

	started, err := nc.SubscribeSync(bus.DefaultPrefix + ".events." + Name + "." + bus.TypePluginStarted)
	if err == nil {
		err = nc.Flush() // the server has the subscription before the plugin starts
	}
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-dir", dir, "-log-format", "text")
	cmd.Env = append(os.Environ(),
		"PLUGBUS_URL="+srv.ClientURL(),
		"PLUGBUS_ARCHIVE_TYPES=com.example.>",
		"PLUGBUS_ARCHIVE_MAX_BYTES=20000", // rotate a few times along the way
	)
	var logs proctest.Output
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reaped := false // exited was read
	t.Cleanup(func() {
		if !reaped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("plugin output:\n%s", logs.String())
		}
	})
	// The plugin announces itself once it is subscribed.
	if _, err := started.NextMsg(15 * time.Second); err != nil {
		t.Fatalf("the plugin did not announce that it started: %v", err)
	}

	const n = 1000
	want := make([]*pluginkit.Event, n)
	for i := range want {
		want[i] = pluginkit.NewEvent("com.example.counter.ticked", map[string]int{"n": i})
		if err := bus.Publish(nc, bus.DefaultPrefix, "tester", want[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		reaped = true
		if err != nil {
			t.Fatalf("plugin exited with %v; want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("plugin still running 15s after SIGTERM")
	}

	got := archived(t, dir)
	if len(got) != n {
		t.Fatalf("archive holds %d events after SIGTERM, want all %d", len(got), n)
	}
	for i := range want {
		sameEvent(t, &got[i], want[i])
	}
	if fs := files(t, dir); len(fs) < 3 {
		t.Errorf("only %d archive files; the test meant to rotate several times", len(fs))
	}
}
