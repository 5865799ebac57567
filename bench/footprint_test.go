package bench_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/plugbus/plugbus/bench/greet"
	"github.com/plugbus/plugbus/bus/bustest"
)

// settle is how long a process idles before its memory is read.
const settle = 500 * time.Millisecond

// BenchmarkFootprint reports the resident memory of idle processes and the
// size of their binaries: the coordinator with no plugins, plugins/hello
// connected to a bus, the go-plugin plugin after its handshake and one
// call, and the JSON-lines child. Each run measures once: b.Loop runs the
// function once per -count, and its loop is empty.
func BenchmarkFootprint(b *testing.B) {
	b.Run("coordinator-idle", func(b *testing.B) {
		httpAddr := freePort(b)
		p := startProc(b, nil, "", bin.coordinator, "serve",
			"--nats-listen", freePort(b), "--http-listen", httpAddr, "--data-dir", b.TempDir(), "--log-level", "warn")
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get("http://" + httpAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("coordinator not ready within 30s: %v; its standard error:\n%s", err, p.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		footprint(b, p.cmd.Process.Pid, bin.coordinator)
	})
	b.Run("hello", func(b *testing.B) {
		s := bustest.NewServer(b)
		p := startHello(b, connect(b, s.ClientURL()), s.ClientURL())
		footprint(b, p.cmd.Process.Pid, bin.hello)
	})
	b.Run("goplugin-grpc", func(b *testing.B) {
		client, g := startGoPlugin(b, plugin.ProtocolGRPC)
		defer client.Kill()
		if _, err := g.Greet(greet.Payload(128)); err != nil {
			b.Fatal(err)
		}
		footprint(b, client.ReattachConfig().Pid, bin.gopluginpeer)
	})
	b.Run("stdio-json", func(b *testing.B) {
		c := startStdio(b)
		defer c.close(b)
		if err := c.call(greet.Payload(128)); err != nil {
			b.Fatal(err)
		}
		footprint(b, c.p.cmd.Process.Pid, bin.stdiopeer)
	})
}

func footprint(b *testing.B, pid int, binary string) {
	time.Sleep(settle)
	rss, err := rssMiB(pid)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
	}
	b.ReportMetric(0, "ns/op") // not a timing
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(fileMiB(b, binary), "binary-MiB")
}
