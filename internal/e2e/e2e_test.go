package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	httpToken = "e2e-http-token"
	eventType = "com.example.ledger.e2e"
)

// deployment is the compose project under test.
type deployment struct {
	t         *testing.T
	compose   []string // the compose command and its global flags
	env       []string
	ledgerDir string
	http      [2]string // the coordinators' HTTP addresses
	client    *http.Client
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func newDeployment(t *testing.T) *deployment {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ledgerDir, err := os.MkdirTemp("", "plugbus-e2e-ledger-")
	if err != nil {
		t.Fatal(err)
	}
	// The containers write as root; let the test read whatever user it is.
	if err := os.Chmod(ledgerDir, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := strings.Fields(os.Getenv("COMPOSE"))
	if len(cmd) == 0 {
		cmd = []string{"docker-compose"}
	}
	project := fmt.Sprintf("plugbuse2e%d", os.Getpid())
	p1, p2 := freePort(t), freePort(t)
	d := &deployment{
		t:       t,
		compose: append(cmd, "-p", project, "-f", filepath.Join(root, "compose", "docker-compose.yml")),
		env: append(os.Environ(), "PLUGBUS_HTTP_TOKEN="+httpToken, "PLUGBUS_NATS_TOKEN=e2e-nats-token",
			"PLUGBUS_HTTP_PORT_1="+p1, "PLUGBUS_HTTP_PORT_2="+p2, "PLUGBUS_LEDGER_DIR="+ledgerDir),
		ledgerDir: ledgerDir,
		http:      [2]string{"127.0.0.1:" + p1, "127.0.0.1:" + p2},
		client:    &http.Client{Timeout: 15 * time.Second},
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := d.composeOut("logs", "--no-color", "--tail", "40")
			t.Logf("container logs (last lines of each):\n%s", out)
		}
		start := time.Now()
		if out, err := d.composeOut("down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
		t.Logf("down -v in %v", time.Since(start).Round(time.Second))
		os.RemoveAll(ledgerDir)
	})
	return d
}

func (d *deployment) composeOut(args ...string) (string, error) {
	cmd := exec.Command(d.compose[0], append(d.compose[1:], args...)...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run runs a compose command and fails the test if it fails.
func (d *deployment) run(args ...string) string {
	d.t.Helper()
	start := time.Now()
	out, err := d.composeOut(args...)
	if err != nil {
		d.t.Fatalf("%s %s: %v\n%s", strings.Join(d.compose[:1], " "), strings.Join(args, " "), err, out)
	}
	d.t.Logf("%s (%v)", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	return out
}

// docker runs a docker command and fails the test if it fails.
func (d *deployment) docker(args ...string) {
	d.t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	d.t.Logf("docker %s", strings.Join(args, " "))
}

// containers returns the ids of a service's containers.
func (d *deployment) containers(service string) []string {
	d.t.Helper()
	return strings.Fields(d.run("ps", "-q", service))
}

// post sends one event to coordinator i and returns nil once it is
// acknowledged (202), or the error the coordinator gave.
func (d *deployment) post(ctx context.Context, i int, id string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+d.http[i]+"/v1/events", strings.NewReader(`{}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+httpToken)
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", id)
	req.Header.Set("Ce-Source", "e2e")
	req.Header.Set("Ce-Type", eventType)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// plugins returns, per plugin name, how many instances coordinator i sees
// running.
func (d *deployment) plugins(i int) (map[string]int, error) {
	ids, err := d.instances(i)
	out := map[string]int{}
	for name, in := range ids {
		out[name] = len(in)
	}
	return out, err
}

// instances returns, per plugin name, the ids of the instances coordinator
// i sees running.
func (d *deployment) instances(i int) (map[string][]string, error) {
	req, _ := http.NewRequest("GET", "http://"+d.http[i]+"/v1/plugins", nil)
	req.Header.Set("Authorization", "Bearer "+httpToken)
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/plugins: status %d", resp.StatusCode)
	}
	var list []struct {
		Name      string `json:"name"`
		Instances []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"instances"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, p := range list {
		for _, in := range p.Instances {
			if in.State == "running" {
				out[p.Name] = append(out[p.Name], in.ID)
			}
		}
		sort.Strings(out[p.Name])
	}
	return out, nil
}

// call sends an HTTP request with the token to coordinator i and returns
// the status and body.
func (d *deployment) call(i int, method, path, body string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+d.http[i]+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+httpToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// waitRegistry waits until both coordinators list every plugin of want
// with that many running instances.
func (d *deployment) waitRegistry(what string, within time.Duration, want map[string]int) {
	d.t.Helper()
	took := waitFor(d.t, what, within, func() error {
		for i := range d.http {
			got, err := d.plugins(i)
			if err != nil {
				return fmt.Errorf("coordinator%d: %v", i+1, err)
			}
			for name, n := range want {
				if got[name] != n {
					return fmt.Errorf("coordinator%d lists %s with %d running instances, want %d (all: %v)", i+1, name, got[name], n, got)
				}
			}
		}
		return nil
	})
	d.t.Logf("%s: after %v", what, took.Round(100*time.Millisecond))
}

func waitFor(t *testing.T, what string, within time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not after %v: %v", what, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// effects reads the ledger's effects: how many times each event id had
// its effect.
func (d *deployment) effects() map[string]int {
	d.t.Helper()
	f, err := os.Open(filepath.Join(d.ledgerDir, "effects"))
	if os.IsNotExist(err) {
		return map[string]int{}
	}
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	n := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			n[line]++
		}
	}
	return n
}

// publisher sends events to one coordinator, one at a time, each id
// tried once, and records which were acknowledged.
type publisher struct {
	d      *deployment
	i      int
	prefix string

	mu     sync.Mutex
	acked  []string
	failed []string // ids whose publish failed
	errs   []string // a sample of the errors, with the time
}

func (d *deployment) publish(ctx context.Context, i int, prefix string) (*publisher, func()) {
	p := &publisher{d: d, i: i, prefix: prefix}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ctx.Err() == nil; n++ {
			id := fmt.Sprintf("%s-c%d-%d", prefix, i+1, n)
			err := d.post(ctx, i, id)
			if ctx.Err() != nil {
				// The outcome is unknown; count it as not acknowledged.
				p.mu.Lock()
				p.failed = append(p.failed, id)
				p.mu.Unlock()
				return
			}
			p.mu.Lock()
			if err == nil {
				p.acked = append(p.acked, id)
			} else {
				p.failed = append(p.failed, id)
				if len(p.errs) < 200 {
					p.errs = append(p.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
			}
			p.mu.Unlock()
			if err != nil {
				time.Sleep(100 * time.Millisecond) // a refused connection fails at once
			} else {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	return p, func() { cancel(); <-done }
}

// counts returns how many publishes were acknowledged and failed so far.
func (p *publisher) counts() (acked, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked), len(p.failed)
}

// waitAcks waits until n more events than now are acknowledged.
func (p *publisher) waitAcks(t *testing.T, n int, within time.Duration) {
	t.Helper()
	a0, _ := p.counts()
	waitFor(t, fmt.Sprintf("%d more events acknowledged by coordinator%d", n, p.i+1), within, func() error {
		if a, f := p.counts(); a < a0+n {
			return fmt.Errorf("%d acknowledged, %d failed", a-a0, f)
		}
		return nil
	})
}

// checkLedger waits until every acknowledged event of the publishers had
// its effect, and checks that none had it twice, acknowledged or not.
func (d *deployment) checkLedger(within time.Duration, pubs ...*publisher) {
	d.t.Helper()
	var acked, failed []string
	for _, p := range pubs {
		acked = append(acked, p.acked...)
		failed = append(failed, p.failed...)
	}
	var eff map[string]int
	took := waitFor(d.t, "every acknowledged event handled", within, func() error {
		eff = d.effects()
		missing := 0
		var sample []string
		for _, id := range acked {
			if eff[id] == 0 {
				missing++
				if len(sample) < 5 {
					sample = append(sample, id)
				}
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d acknowledged events not handled yet, such as %v", missing, len(acked), sample)
		}
		return nil
	})
	twice := 0
	for id, n := range eff {
		if n > 1 {
			twice++
			d.t.Errorf("event %s had its effect %d times", id, n)
		}
	}
	storedAnyway := 0
	for _, id := range failed {
		if eff[id] > 0 {
			storedAnyway++
		}
	}
	d.t.Logf("%d acknowledged events all handled (within %v of the end), none twice; of %d publishes that failed, %d were handled anyway (stored, but the acknowledgement did not reach the client)",
		len(acked), took.Round(100*time.Millisecond), len(failed), storedAnyway)
}
