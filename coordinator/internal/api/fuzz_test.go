package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/api"
)

// FuzzIngest throws arbitrary bodies, content types and ce- headers at
// POST /v1/events: every answer must be 202 or a 4xx with a JSON error, and
// nothing may panic. Run longer with
//
//	go test -fuzz FuzzIngest ./coordinator/internal/api/
func FuzzIngest(f *testing.F) {
	seeds := []struct {
		contentType, ceName, ceValue, body string
	}{
		{"application/json", "id", "1", `{"a":1}`},
		{"application/json", "", "", `{}`},
		{"application/cloudevents+json", "", "", `{"specversion":"1.0","id":"1","source":"urn:x","type":"a.b","data":{"x":1}}`},
		{"application/cloudevents+json", "", "", `{"specversion":"1.0","id":"1","source":"urn:x","type":"a.b","data_base64":"!!"}`},
		{"application/cloudevents+json", "", "", `{"specversion":"1.0","id":"1","source":"urn:x","type":"a.b","time":"2020-13-45T00:00:00Z"}`},
		{"application/cloudevents+json", "", "", `{"specversion":"1.0","id":"1","source":"%zz","type":"a.b","Ext":{"n":[1]}}`},
		{"application/cloudevents-batch+json", "", "", `[{"specversion":"1.0","id":"1","source":"urn:x","type":"a.b"},{},null,1,"s"]`},
		{"application/cloudevents-batch+json", "", "", `[[[[[[]]]]]]`},
		{"text/plain", "time", "2020-01-01T00:00:00Z", `hello`},
		{"", "", "1", ``},
		{"application/json", "dataschema", "::not a uri", `{}`},
		{"application/json", "source", `"quoted%20value"`, `{}`},
		{"application/json", "subject", "%F0%28%8C%28", `{}`},
		{"application/cloudevents", "", "", `{}`},
		{"application/cloudevents+json; charset=\"", "", "", `{}`},
	}
	for _, s := range seeds {
		f.Add(s.contentType, s.ceName, s.ceValue, []byte(s.body))
	}
	srv := bustest.NewServer(f)
	reg := prometheus.NewRegistry()
	h, err := api.New(api.Config{
		Conn: bustest.Connect(f, srv), Registerer: reg, Gatherer: reg, MaxBodyBytes: 64 << 10,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, contentType, ceName, ceValue string, body []byte) {
		req := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if ceValue != "" {
			// A binary-mode event around the fuzzed header.
			req.Header.Set("Ce-Specversion", "1.0")
			req.Header.Set("Ce-Id", "fuzz")
			req.Header.Set("Ce-Source", "urn:fuzz")
			req.Header.Set("Ce-Type", "com.example.fuzz")
			req.Header["Ce-"+ceName] = []string{ceValue}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted:
			var a struct{ Accepted int }
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
				t.Fatalf("202 with body %q: %v", rec.Body, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d with body %q: %v", rec.Code, rec.Body, err)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
