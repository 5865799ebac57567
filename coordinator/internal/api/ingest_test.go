package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/api"
)

type accepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
}

func TestIngestModes(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.subscribe()

	type want struct {
		id, typ, source, subject, contentType, data string
		ext                                         map[string]string
	}
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   []want
	}{
		{
			name: "binary",
			header: merge(binary("b-1", "com.example.user.created"), http.Header{
				"Ce-Subject":     {"hello%20w%C3%B6rld"}, // percent-encoded as the HTTP binding says
				"Ce-Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			}),
			body: `{"name":"ann"}`,
			want: []want{{
				id: "b-1", typ: "com.example.user.created", source: "urn:test", subject: "hello wörld",
				contentType: "application/json", data: `{"name":"ann"}`,
				ext: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			}},
		},
		{
			name:   "binary without data",
			header: http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"b-2"}, "Ce-Source": {"urn:test"}, "Ce-Type": {"com.example.ping"}},
			want:   []want{{id: "b-2", typ: "com.example.ping", source: "urn:test"}},
		},
		{
			name:   "structured",
			header: structured(),
			body: `{"specversion":"1.0","id":"s-1","source":"urn:test","type":"com.example.order.placed",
				"datacontenttype":"application/json","data":{"order":7},"region":"eu"}`,
			want: []want{{
				id: "s-1", typ: "com.example.order.placed", source: "urn:test", contentType: "application/json",
				data: `{"order":7}`, ext: map[string]string{"region": "eu"},
			}},
		},
		{
			name:   "structured with charset",
			header: http.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}},
			body:   `{"specversion":"1.0","id":"s-2","source":"urn:test","type":"com.example.ping"}`,
			want:   []want{{id: "s-2", typ: "com.example.ping", source: "urn:test"}},
		},
		{
			// The 202 names the ids as JSON strings, escaped where needed.
			name:   "batch with ids that need escaping in JSON",
			header: batch(),
			body: `[
				{"specversion":"1.0","id":"say \"hi\" \\ <b>&amp; caf\u00e9 \u2028","source":"urn:test","type":"com.example.a"},
				{"specversion":"1.0","id":"plain-2","source":"urn:test","type":"com.example.a"}
			]`,
			want: []want{
				{id: "say \"hi\" \\ <b>&amp; caf\u00e9 \u2028", typ: "com.example.a", source: "urn:test"},
				{id: "plain-2", typ: "com.example.a", source: "urn:test"},
			},
		},
		{
			name:   "empty batch",
			header: batch(),
			body:   `[]`,
		},
		{
			name:   "batch",
			header: batch(),
			body: `[
				{"specversion":"1.0","id":"k-1","source":"urn:test","type":"com.example.a","datacontenttype":"application/json","data":[1,2]},
				{"specversion":"1.0","id":"k-2","source":"urn:test","type":"com.example.b","datacontenttype":"text/plain","data":"hi"},
				{"specversion":"1.0","id":"k-3","source":"urn:test","type":"com.example.a","data_base64":"AAEC"}
			]`,
			want: []want{
				{id: "k-1", typ: "com.example.a", source: "urn:test", contentType: "application/json", data: `[1,2]`},
				{id: "k-2", typ: "com.example.b", source: "urn:test", contentType: "text/plain", data: "hi"},
				{id: "k-3", typ: "com.example.a", source: "urn:test", data: "\x00\x01\x02"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do("POST", "/v1/events", tt.header, []byte(tt.body))
			if resp.status != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", resp.status, resp.body)
			}
			var got accepted
			if err := json.Unmarshal(resp.body, &got); err != nil {
				t.Fatalf("body %s: %v", resp.body, err)
			}
			if got.Accepted != len(tt.want) || len(got.IDs) != len(tt.want) || got.IDs == nil {
				t.Fatalf("answer %+v, want %d events", got, len(tt.want))
			}
			for i, w := range tt.want {
				if got.IDs[i] != w.id {
					t.Errorf("ids[%d] = %q, want %q", i, got.IDs[i], w.id)
				}
				msg := next(t, sub)
				if want := "plugbus.events.http." + w.typ; msg.Subject != want {
					t.Errorf("subject %q, want %q", msg.Subject, want)
				}
				ev, err := bus.Decode(msg)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if ev.ID() != w.id || ev.Type() != w.typ || ev.Source() != w.source || ev.Subject() != w.subject {
					t.Errorf("got id %q type %q source %q subject %q, want %q %q %q %q",
						ev.ID(), ev.Type(), ev.Source(), ev.Subject(), w.id, w.typ, w.source, w.subject)
				}
				if ev.DataContentType() != w.contentType {
					t.Errorf("datacontenttype %q, want %q", ev.DataContentType(), w.contentType)
				}
				if string(ev.Data()) != w.data {
					t.Errorf("data %q, want %q", ev.Data(), w.data)
				}
				for k, v := range w.ext {
					if got := fmt.Sprint(ev.Extensions()[k]); got != v {
						t.Errorf("extension %s = %q, want %q", k, got, v)
					}
				}
			}
			none(t, sub)
		})
	}
}

func TestIngestRejects(t *testing.T) {
	const limit = 4096
	e := newEnv(t, func(c *api.Config) { c.MaxBodyBytes = limit })
	sub := e.subscribe()

	without := func(h http.Header, key string) http.Header { h.Del(key); return h }
	with := func(h http.Header, key, value string) http.Header { h.Set(key, value); return h }
	good := `{"specversion":"1.0","id":"g","source":"urn:test","type":"com.example.ok"}`

	tests := []struct {
		name      string
		header    http.Header
		body      string
		status    int
		field     string
		index     int // -1: none
		mentions  string
		reasonKey string
	}{
		{"missing ce-id", without(binary("", "com.example.x"), "Ce-Id"), `{}`, 400, "id", -1, "id", "bad_request"},
		{"empty ce-id", binary("", "com.example.x"), `{}`, 400, "id", -1, "required", "bad_request"},
		{"bad specversion", with(binary("x", "com.example.x"), "Ce-Specversion", "2.0"), `{}`, 400, "specversion", -1, "1.0", "bad_request"},
		{"old specversion", with(binary("x", "com.example.x"), "Ce-Specversion", "0.3"), `{}`, 400, "specversion", -1, "1.0", "bad_request"},
		{"no specversion", without(binary("x", "com.example.x"), "Ce-Specversion"), `{}`, 400, "specversion", -1, "ce-specversion", "bad_request"},
		{"invalid type", binary("x", "a..b"), `{}`, 400, "type", -1, "empty dot-separated part", "bad_request"},
		{"wildcard type", binary("x", "com.*.x"), `{}`, 400, "type", -1, "wildcards", "bad_request"},
		{"bad percent-encoding", with(binary("x", "com.example.x"), "Ce-Subject", "100%"), `{}`, 400, "subject", -1, "percent-encoding", "bad_request"},
		{"bad time", with(binary("x", "com.example.x"), "Ce-Time", "yesterday"), `{}`, 400, "time", -1, "RFC 3339", "bad_request"},
		{"bad time in structured mode", structured(), `{"specversion":"1.0","id":"x","source":"urn:test","type":"com.example.x","time":"yesterday"}`, 400, "", -1, "yesterday", "bad_request"},
		{"ce-datacontenttype", with(binary("x", "com.example.x"), "Ce-Datacontenttype", "text/plain"), `{}`, 400, "datacontenttype", -1, "Content-Type", "bad_request"},
		{"bad extension name in binary", with(binary("x", "com.example.x"), "Ce-My_ext", "v"), `{}`, 400, "my_ext", -1, "lower-case", "bad_request"},
		{"header named ce-", with(binary("x", "com.example.x"), "Ce-", "v"), `{}`, 400, "ce-", -1, "ce-<attribute>", "bad_request"},
		{"uppercase extension", structured(), `{"specversion":"1.0","id":"x","source":"urn:test","type":"com.example.x","myExt":"v"}`, 400, "myExt", -1, "lower-case", "bad_request"},
		{"control character", structured(), `{"specversion":"1.0","id":"x\u0007","source":"urn:test","type":"com.example.x"}`, 400, "id", -1, "control character", "bad_request"},
		{"several problems", structured(), `{"specversion":"1.0","id":"","source":"urn:test","type":"com.example.x","Bad":"v"}`, 400, "id", -1, "id: is required and must not be empty or blank; Bad: extension name must use only lower-case", "bad_request"},
		{"truncated JSON", structured(), `{"specversion":"1.0","id":"x","sour`, 400, "", -1, "structured mode", "bad_request"},
		{"empty structured body", structured(), ``, 400, "", -1, "structured mode", "bad_request"},
		{"structured not an object", structured(), `[1]`, 400, "", -1, "structured mode", "bad_request"},
		{"batch with one bad event", batch(), `[` + good + `,{"specversion":"1.0","source":"urn:test","type":"com.example.x"}]`, 400, "id", 1, "index 1", "bad_request"},
		{"batch with a bad type", batch(), `[` + good + `,` + good + `,{"specversion":"1.0","id":"3","source":"urn:test","type":"x y"}]`, 400, "type", 2, "whitespace", "bad_request"},
		{"batch with null", batch(), `[` + good + `,null]`, 400, "", 1, "index 1", "bad_request"},
		{"batch not an array", batch(), good, 400, "", -1, "JSON array", "bad_request"},
		{"batch truncated", batch(), `[` + good, 400, "", -1, "JSON array", "bad_request"},
		{"unknown content type", http.Header{"Content-Type": {"text/plain"}}, `hello`, 415, "Content-Type", -1, "binary mode", "unsupported_media_type"},
		{"no content type", nil, `hello`, 415, "Content-Type", -1, "structured mode", "unsupported_media_type"},
		{"other event format", http.Header{"Content-Type": {"application/cloudevents+protobuf"}}, `x`, 415, "Content-Type", -1, "JSON event format", "unsupported_media_type"},
		{"oversized body", binary("x", "com.example.x"), `"` + strings.Repeat("a", limit) + `"`, 413, "", -1, fmt.Sprint(limit), "too_large"},
		{"oversized batch", batch(), `[` + strings.Repeat(good+",", limit/len(good)) + good + `]`, 413, "", -1, "limit", "too_large"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do("POST", "/v1/events", tt.header, []byte(tt.body))
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.status, resp.body)
			}
			eb := resp.errorBody(t)
			if eb.Field != tt.field {
				t.Errorf("field %q, want %q (%s)", eb.Field, tt.field, eb.Error)
			}
			if tt.index >= 0 && (eb.Index == nil || *eb.Index != tt.index) {
				t.Errorf("index %v, want %d (%s)", eb.Index, tt.index, eb.Error)
			}
			if !strings.Contains(eb.Error, tt.mentions) {
				t.Errorf("error %q does not mention %q", eb.Error, tt.mentions)
			}
			none(t, sub)

			// The API still works after the bad request.
			id := fmt.Sprintf("after-%d", i)
			resp = e.do("POST", "/v1/events", binary(id, "com.example.ok"), []byte(`{}`))
			if resp.status != http.StatusAccepted {
				t.Fatalf("good request after: status %d: %s", resp.status, resp.body)
			}
			ev, err := bus.Decode(next(t, sub))
			if err != nil || ev.ID() != id {
				t.Fatalf("good request after: got %v, %v; want event %s", ev, err, id)
			}
		})
	}
	// Every rejection above was counted under its reason.
	counts := map[string]float64{}
	for _, tt := range tests {
		counts[tt.reasonKey]++
	}
	fams := scrape(t, e)
	for reason, want := range counts {
		if got := value(t, fams, "plugbus_http_ingest_errors_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("ingest errors {reason=%s} = %v, want %v", reason, got, want)
		}
	}
}

func TestToken(t *testing.T) {
	const token = "s3cret-token"
	e := newEnv(t, func(c *api.Config) { c.Token = token })
	sub := e.subscribe()
	ev := binary("t-1", "com.example.x")

	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"no header", nil},
		{"wrong token", bearer("wrong")},
		{"prefix of the token", bearer(token[:4])},
		{"other scheme", http.Header{"Authorization": {"Basic " + token}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/events", "/v1/invoke/com.example.x"} {
				resp := e.do("POST", path, merge(ev, tc.header), []byte(`{}`))
				if resp.status != http.StatusUnauthorized {
					t.Fatalf("POST %s: status %d, want 401: %s", path, resp.status, resp.body)
				}
				if eb := resp.errorBody(t); !strings.Contains(eb.Error, "Bearer") {
					t.Errorf("error %q does not say how to authenticate", eb.Error)
				}
				if resp.header.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate header")
				}
			}
			if resp := e.do("GET", "/v1/plugins", tc.header, nil); resp.status != http.StatusUnauthorized {
				t.Fatalf("GET /v1/plugins: status %d, want 401", resp.status)
			}
		})
	}
	none(t, sub)

	resp := e.do("POST", "/v1/events", merge(ev, bearer(token)), []byte(`{}`))
	if resp.status != http.StatusAccepted {
		t.Fatalf("with token: status %d: %s", resp.status, resp.body)
	}
	next(t, sub)
	if resp := e.do("GET", "/v1/plugins", http.Header{"Authorization": {"bearer " + token}}, nil); resp.status != http.StatusOK {
		t.Errorf("GET /v1/plugins with token: status %d", resp.status)
	}
	// Health, readiness and metrics stay open for probes and scrapers.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/"} {
		if resp := e.do("GET", path, nil, nil); resp.status != http.StatusOK {
			t.Errorf("GET %s without token: status %d", path, resp.status)
		}
	}
	fams := scrape(t, e)
	if got := value(t, fams, "plugbus_http_ingest_errors_total", map[string]string{"reason": "unauthorized"}); got != 12 {
		t.Errorf("unauthorized = %v, want 12", got)
	}
}
