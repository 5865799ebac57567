package bench_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkScale starts the coordinator (its embedded NATS server, no
// plugins of its own) and a few scalepeer processes running many plugin
// instances between them, each instance on its own NATS connection, and
// measures how long the coordinator takes to list them all:
//
//   - listed-s: from starting the peers until GET /v1/plugins lists every
//     instance as running (the target: 1,000 within 5 s, 10,000
//     within 30 s);
//   - described-s: until every instance also has its description, which
//     the registry reads with a $SRV.INFO request per new instance;
//   - peers-ready-s: until every peer has heard all its instances announce
//     themselves;
//   - coord-rss-MiB: the coordinator's resident memory once all are listed
//     (the embedded NATS server with every connection, and the registry);
//   - peers-rss-MiB: the peers' together, for the cost of the connections;
//   - plugins-api-ms and plugins-api-KiB: one GET /v1/plugins with all of
//     them listed;
//   - coord-steady-cpu-%: the coordinator's CPU (100 = one core) over the
//     next 20 s, polling them all, after which they must all still be listed.
//
// Each iteration starts everything afresh. With -short (CI's smoke run) it
// runs a few dozen instances only.
func BenchmarkScale(b *testing.B) {
	cases := []scaleCase{
		{name: "1000x10types", instances: 1000, types: 10, plugins: 100, peers: 4},
		{name: "10000x1type", instances: 10000, types: 1, plugins: 100, peers: 8},
	}
	if testing.Short() {
		cases = []scaleCase{
			{name: "50x10types", instances: 50, types: 10, plugins: 5, peers: 2},
			{name: "100x1type", instances: 100, types: 1, plugins: 10, peers: 2},
		}
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var sum scaleResult
			n := 0
			for b.Loop() {
				r := c.run(b)
				sum.listed += r.listed
				sum.described += r.described
				sum.peersReady += r.peersReady
				sum.coordRSS += r.coordRSS
				sum.peersRSS += r.peersRSS
				sum.apiTime += r.apiTime
				sum.apiKiB += r.apiKiB
				sum.steadyCPU += r.steadyCPU
				n++
			}
			f := float64(n)
			b.ReportMetric(0, "ns/op") // not a timing of its own
			b.ReportMetric(sum.listed.Seconds()/f, "listed-s")
			b.ReportMetric(sum.described.Seconds()/f, "described-s")
			b.ReportMetric(sum.peersReady.Seconds()/f, "peers-ready-s")
			b.ReportMetric(sum.coordRSS/f, "coord-rss-MiB")
			b.ReportMetric(sum.peersRSS/f, "peers-rss-MiB")
			b.ReportMetric(float64(sum.apiTime.Microseconds())/1e3/f, "plugins-api-ms")
			b.ReportMetric(sum.apiKiB/f, "plugins-api-KiB")
			b.ReportMetric(sum.steadyCPU/f, "coord-steady-cpu-%")
		})
	}
}

type scaleCase struct {
	name                             string
	instances, types, plugins, peers int
}

type scaleResult struct {
	listed, described, peersReady, apiTime time.Duration
	coordRSS, peersRSS, apiKiB, steadyCPU  float64
}

// scaleDeadline is how long the instances may take to be listed and
// described before the benchmark fails.
const scaleDeadline = 120 * time.Second

// scaleSteady is how long the instances must stay listed once they all are:
// longer than the coordinator's gone-after, which with 10,000 instances is
// 15 s (polled every 5 s, gone after missing two polls and the gather
// after them; see the registry's PollRate), and a whole number of its
// polls there, so that the CPU measured over it is that of four polls.
const scaleSteady = 20 * time.Second

func (c scaleCase) run(b *testing.B) scaleResult {
	// Every instance holds a connection, and the coordinator's embedded
	// server one socket for each. Go raises its soft limit on open files to
	// the hard limit by itself, so only the hard limit matters.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if need := uint64(c.instances + 1000); lim.Max < need {
		b.Fatalf("%d instances need about %d open files in the coordinator; the hard limit (ulimit -Hn) is %d", c.instances, need, lim.Max)
	}

	coord, natsAddr, httpAddr := startCoordinator(b)
	var res scaleResult
	start := time.Now()
	ready := make(chan bool, c.peers)
	var peers []*proc
	per := (c.instances + c.peers - 1) / c.peers
	for off := 0; off < c.instances; off += per {
		n := min(per, c.instances-off)
		peers = append(peers, startScalePeer(b, ready, "-url", "nats://"+natsAddr,
			"-instances", strconv.Itoa(n), "-offset", strconv.Itoa(off),
			"-types", strconv.Itoa(c.types), "-plugins", strconv.Itoa(c.plugins)))
	}
	defer func() {
		stopAll(b, peers)
		coord.stop(b)
	}()

	deadline := time.After(scaleDeadline)
	waitingPeers := len(peers)
	var running, described int
	// The listing is asked for every 200 ms, or five times as long as the
	// last one took when longer (about 0.5 s with 10,000 instances): asked
	// every 200 ms, its 4.5 MB took an eighth of the coordinator's CPU
	// while the instances came up, a load no user puts on it.
	every := 200 * time.Millisecond
	for res.listed == 0 || res.described == 0 || waitingPeers > 0 {
		select {
		case ok := <-ready:
			if !ok {
				for _, p := range peers {
					if p.cmd.ProcessState != nil || p.stderr.String() != "" {
						b.Logf("scalepeer %v: %s", p.cmd.Args[1:], p.stderr)
					}
				}
				b.Fatalf("a scalepeer exited before it was ready")
			}
			if waitingPeers--; waitingPeers == 0 {
				res.peersReady = time.Since(start)
			}
			continue
		case <-deadline:
			b.Fatalf("after %v: %d of %d instances listed as running (all after %v), %d described, %d of %d peers ready",
				scaleDeadline, running, c.instances, res.listed, described, len(peers)-waitingPeers, len(peers))
		case <-time.After(every):
		}
		var err error
		var took time.Duration
		running, described, took, _, err = listPlugins(httpAddr)
		every = max(200*time.Millisecond, 5*took)
		if err != nil {
			b.Fatalf("GET /v1/plugins: %v; the coordinator's standard error:\n%s", err, coord.stderr)
		}
		if res.listed == 0 && running >= c.instances {
			res.listed = time.Since(start)
			if res.coordRSS, err = rssMiB(coord.cmd.Process.Pid); err != nil {
				b.Fatal(err)
			}
			for _, p := range peers {
				rss, err := rssMiB(p.cmd.Process.Pid)
				if err != nil {
					b.Fatal(err)
				}
				res.peersRSS += rss
			}
		}
		if res.described == 0 && described >= c.instances {
			res.described = time.Since(start)
		}
	}
	_, _, took, size, err := listPlugins(httpAddr)
	if err != nil {
		b.Fatal(err)
	}
	res.apiTime, res.apiKiB = took, float64(size)/1024

	// Once all are known, the coordinator keeps polling them: they must
	// stay listed past its gone-after time (5 s, 15 s with 10,000), which
	// they do only if every poll hears every one of them. What that polling costs is the
	// coordinator's CPU meanwhile.
	pid := coord.cmd.Process.Pid
	cpu0, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	steady := scaleSteady
	if testing.Short() {
		steady = time.Second // the smoke run only checks it works
	}
	time.Sleep(steady)
	cpu1, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	res.steadyCPU = 100 * (cpu1 - cpu0).Seconds() / steady.Seconds()
	if running, _, _, _, err = listPlugins(httpAddr); err != nil || running != c.instances {
		b.Fatalf("%v after all were listed: %d of %d instances running (%v); the coordinator's standard error:\n%s",
			steady, running, c.instances, err, coord.stderr)
	}
	// Nor may any have been marked gone (unhealthy) in between.
	if n := strings.Count(coord.stderr.String(), "plugin instance unhealthy"); n > 0 {
		b.Fatalf("the coordinator marked instances unhealthy %d times (or more) while they all ran; its standard error:\n%.4000s", n, coord.stderr)
	}
	return res
}

// listPlugins asks the coordinator for its plugins and counts the instances
// running and those with a description.
func listPlugins(httpAddr string) (running, described int, took time.Duration, size int, err error) {
	t := time.Now()
	resp, err := http.Get("http://" + httpAddr + "/v1/plugins")
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took = time.Since(t)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, 0, fmt.Errorf("%s: %s", resp.Status, body)
	}
	var plugins []struct {
		Instances []struct{ State, Description string }
	}
	if err := json.Unmarshal(body, &plugins); err != nil {
		return 0, 0, 0, 0, err
	}
	for _, p := range plugins {
		for _, in := range p.Instances {
			if in.State == "running" {
				running++
			}
			if in.Description != "" {
				described++
			}
		}
	}
	return running, described, took, len(body), nil
}

// startCoordinator starts the coordinator on its embedded NATS server, on
// free ports, and waits until it is ready.
func startCoordinator(b *testing.B, args ...string) (p *proc, natsAddr, httpAddr string) {
	natsAddr, httpAddr = freePort(b), freePort(b)
	p = startProc(b, nil, "", bin.coordinator, append([]string{"serve",
		"--nats-listen", natsAddr, "--http-listen", httpAddr, "--data-dir", b.TempDir(), "--log-level", "warn"}, args...)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, natsAddr, httpAddr
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("coordinator not ready within 30s: %v; its standard error:\n%s", err, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startScalePeer starts a scalepeer without waiting for it, and sends on
// ready whether it said it was ready (false: it exited first).
func startScalePeer(b *testing.B, ready chan<- bool, args ...string) *proc {
	p := &proc{cmd: exec.Command(bin.scalepeer, args...), stderr: &syncBuffer{}}
	p.cmd.Env = os.Environ()
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.stop(b) })
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if lines.Text() == "ready" {
				ready <- true
				for lines.Scan() { // keep the pipe drained
				}
				return
			}
		}
		ready <- false
	}()
	return p
}
