package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/plugbus/plugbus/bus"
)

// TestAcceptedBody checks the hand-written 202 of POST /v1/events against
// what encoding/json writes for the same answer.
func TestAcceptedBody(t *testing.T) {
	for _, ids := range [][]string{
		{},
		{"1"},
		{"a-1", "b-2", "c-3"},
		{`quote " and backslash \`, "<html> & friends", "café", "line\u2028separator", "tab\tand\x7f"},
	} {
		want, err := json.Marshal(struct {
			Accepted int      `json:"accepted"`
			IDs      []string `json:"ids"`
		}{len(ids), ids})
		if err != nil {
			t.Fatal(err)
		}
		if got := acceptedBody(ids); string(got) != string(want)+"\n" {
			t.Errorf("acceptedBody(%q) = %s, want %s", ids, got, want)
		}
	}
}

func TestPluginStatus(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{"400", 400},
		{"404", 404},
		{"422", 422},
		{"429", 429},
		{"500", 502}, // the plugin failed, not the coordinator
		{"501", 501},
		{"503", 503},
		{"504", 504},
		{"200", 502},
		{"302", 502},
		{"600", 502},
		{"", 502},
		{"oops", 502},
		{"-400", 502},
	}
	for _, tt := range tests {
		if got := pluginStatus(tt.code); got != tt.want {
			t.Errorf("pluginStatus(%q) = %d, want %d", tt.code, got, tt.want)
		}
	}
}

func TestUnescapeHeader(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"plain", "plain", true},
		{"hello%20world", "hello world", true},
		{"%E2%82%AC", "€", true},
		{"%e2%82%ac", "€", true},
		{`"quoted value"`, "quoted value", true},
		{`"a\"b"`, `a"b`, true},
		{"%25", "%", true},
		{"100%", "", false},
		{"%4", "", false},
		{"%zz", "", false},
		{"%FF", "", false}, // not UTF-8 once decoded
		{"\xff", "", false},
	}
	for _, tt := range tests {
		got, err := bus.UnescapeHeader(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("UnescapeHeader(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestDetectMode(t *testing.T) {
	tests := []struct {
		header http.Header
		want   mode
		status int
	}{
		{http.Header{"Content-Type": {"application/cloudevents+json"}}, modeStructured, 0},
		{http.Header{"Content-Type": {"Application/CloudEvents+JSON; charset=utf-8"}}, modeStructured, 0},
		{http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, modeBatch, 0},
		{http.Header{"Content-Type": {"application/cloudevents+avro"}}, modeNone, 415},
		{http.Header{"Content-Type": {"application/json"}, "Ce-Id": {"1"}}, modeBinary, 0},
		{http.Header{"ce-specversion": {"1.0"}}, modeBinary, 0},
		{http.Header{"Content-Type": {"application/json"}}, modeNone, 0},
		{http.Header{}, modeNone, 0},
		// Structured mode wins over ce- headers, as the binding says.
		{http.Header{"Content-Type": {"application/cloudevents+json"}, "Ce-Id": {"1"}}, modeStructured, 0},
	}
	for _, tt := range tests {
		got, aerr := detectMode(tt.header)
		status := 0
		if aerr != nil {
			status = aerr.status
		}
		if got != tt.want || status != tt.status {
			t.Errorf("detectMode(%v) = %v, %d; want %v, %d", tt.header, got, status, tt.want, tt.status)
		}
	}
}

func TestTypeLabelsCap(t *testing.T) {
	var tl typeLabels
	tl.seen = map[string]struct{}{}
	for i := range maxTypeLabels {
		typ := "t." + string(rune('a'+i%26)) + "." + strconv.Itoa(i)
		if got := tl.label(typ); got != typ {
			t.Fatalf("label %d = %q", i, got)
		}
	}
	if got := tl.label("one.more"); got != otherTypeLabel {
		t.Errorf("label past the cap = %q, want %q", got, otherTypeLabel)
	}
	if got := tl.label("t.a.0"); got != "t.a.0" {
		t.Errorf("a type seen before the cap = %q", got)
	}
}
