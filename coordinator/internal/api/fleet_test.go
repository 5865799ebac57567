package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
	"github.com/plugbus/plugbus/coordinator/internal/api"
)

// TestFleetEndpoints checks the answers of /v1/agents and /v1/run that
// need no agent process: the lists, and the errors that name what to do.
// The orders themselves, carried out by a real agent, are tested in
// package agent.
func TestFleetEndpoints(t *testing.T) {
	var store *agent.Store
	e := newEnv(t, func(c *api.Config) {
		js, _ := jetstream.New(c.Conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if store, err = agent.OpenStore(ctx, js, bus.DefaultPrefix, 0); err != nil {
			t.Fatal(err)
		}
		c.Fleet = store
	})
	for _, path := range []string{"/v1/agents", "/v1/run"} {
		r := e.do("GET", path, nil, nil)
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
			t.Errorf("GET %s: %d %s, want 200 []", path, r.status, r.body)
		}
	}
	tests := []struct {
		method, path, body string
		status             int
		mention            string
	}{
		{"POST", "/v1/run", `{"name":"hello","exec":"/bin/hello"}`, http.StatusConflict, "coordinator agent"},
		{"POST", "/v1/run", `{"name":"hello"}`, http.StatusBadRequest, "exec"},
		{"POST", "/v1/run", `{"name":"hello","exe":"/bin/hello"}`, http.StatusBadRequest, "exe"},
		{"POST", "/v1/run/hello/scale?replicas=2", "", http.StatusNotFound, "hello"},
		{"POST", "/v1/run/hello/scale?replicas=two", "", http.StatusBadRequest, "replicas"},
		{"POST", "/v1/run/hello/restart", "", http.StatusNotFound, "hello"},
		{"DELETE", "/v1/run/hello", "", http.StatusNotFound, "hello"},
		{"PUT", "/v1/run", "", http.StatusMethodNotAllowed, "GET or POST"},
	}
	for _, tt := range tests {
		r := e.do(tt.method, tt.path, http.Header{"Content-Type": {"application/json"}}, []byte(tt.body))
		if r.status != tt.status {
			t.Errorf("%s %s: status %d, want %d: %s", tt.method, tt.path, r.status, tt.status, r.body)
			continue
		}
		if msg := r.errorBody(t).Error; !strings.Contains(msg, tt.mention) {
			t.Errorf("%s %s: error %q does not mention %q", tt.method, tt.path, msg, tt.mention)
		}
	}
	// The log lines of a plugin, as agents publish them.
	for _, l := range []string{`{"msg":"one"}`, `{"msg":"two"}`, `{"msg":"three"}`} {
		if err := e.nc.Publish(store.LogSubject("hello"), []byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	// The stream stores the lines a moment after they are published: ask
	// until the third has arrived, or the deadline passes.
	var lines []map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for (len(lines) != 2 || lines[1]["msg"] != "three") && time.Now().Before(deadline) {
		r := e.do("GET", "/v1/run/hello/logs?n=2", nil, nil)
		lines = nil
		if err := json.Unmarshal(r.body, &lines); err != nil {
			t.Fatalf("logs: %v: %s", err, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 2 || lines[0]["msg"] != "two" || lines[1]["msg"] != "three" {
		t.Errorf("the last 2 log lines: %v, want two, three", lines)
	}
}
