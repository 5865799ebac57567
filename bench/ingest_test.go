package bench_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bench/greet"
)

// ingestClients is how many requests the client keeps in flight, each on a
// kept-alive connection of its own.
const ingestClients = 32

// BenchmarkIngest measures HTTP ingest without durability: events/s of
// 128 B CloudEvents in binary mode (ce- headers, JSON body) POSTed by one
// client with ingestClients requests in flight, each answered 202 once the
// event reached the NATS server.
//
//   - nethttp-nats: bench/cmd/ingestpeer, a minimal net/http handler that
//     publishes the body with nats.go to its embedded server and flushes.
//   - plugbus: POST /v1/events to the coordinator binary, which reads the
//     event, validates it, publishes it on its subject over its in-process
//     connection and flushes.
//
// cpu-ns/op counts the client and the server process; server-cpu-ns/op the
// server alone (in 10 ms ticks).
func BenchmarkIngest(b *testing.B) {
	payload := greet.Payload(128)
	b.Run("nethttp-nats", func(b *testing.B) {
		addr := freePort(b)
		p := startProc(b, nil, "ready", bin.ingestpeer, "-http-listen", addr)
		runIngest(b, "http://"+addr+"/events", payload, p.cmd.Process.Pid)
	})
	b.Run("plugbus", func(b *testing.B) {
		coord, _, httpAddr := startCoordinator(b)
		runIngest(b, "http://"+httpAddr+"/v1/events", payload, coord.cmd.Process.Pid)
	})
}

func runIngest(b *testing.B, url string, payload []byte, server int) {
	tr := &http.Transport{MaxIdleConns: ingestClients, MaxIdleConnsPerHost: ingestClients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var seq atomic.Int64
	post := func() error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", strconv.FormatInt(seq.Add(1), 10))
		req.Header.Set("Ce-Source", "bench/ingest")
		req.Header.Set("Ce-Type", "com.example.bench.ingested")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusAccepted {
			err = fmt.Errorf("POST %s: %s: %s", url, resp.Status, body)
		}
		return err
	}
	// Warm up: one request per connection, and a check that it works.
	for range ingestClients {
		if err := post(); err != nil {
			b.Fatal(err)
		}
	}

	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	b.ResetTimer()
	start, cpu0, server0 := time.Now(), cpuOf(b, server), serverCPU(b, server)
	for range ingestClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := post(); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu, serverCPUUsed := time.Since(start), cpuOf(b, server)-cpu0, serverCPU(b, server)-server0
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(serverCPUUsed.Nanoseconds())/float64(b.N), "server-cpu-ns/op")
}

// serverCPU is the CPU time process pid has used.
func serverCPU(b *testing.B, pid int) time.Duration {
	d, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}
