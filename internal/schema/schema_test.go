package schema_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/internal/schema"
)

type greet struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags,omitempty"`
	Count int      `json:"count,omitempty"`
}

func TestForValidates(t *testing.T) {
	doc, err := schema.For[greet]("urn:plugbus:schema:com.example.greet.requested:1")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	if m["$id"] != "urn:plugbus:schema:com.example.greet.requested:1" {
		t.Errorf("$id = %v", m["$id"])
	}
	v, err := schema.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{`{"name":"Ada"}`, `{"name":"Ada","extra":true}`, `{"name":"Ada","tags":["x"],"count":2}`} {
		if err := v.Validate([]byte(ok)); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", ok, err)
		}
	}
	for _, tc := range []struct{ data, field, rule string }{
		{`{"name":5}`, "name", "string"},
		{`{}`, "", "name"},
		{`{"name":"Ada","count":"x"}`, "count", "integer"},
		{`{"name":"Ada","tags":[1]}`, "tags.0", "string"},
		{`[1,2]`, "", "object"},
		{`{"name":`, "", "JSON"},
	} {
		err := v.Validate([]byte(tc.data))
		var se *schema.Error
		if !errors.As(err, &se) {
			t.Errorf("Validate(%s) = %v, want a *schema.Error", tc.data, err)
			continue
		}
		if se.Problems[0].Field != tc.field || !strings.Contains(se.Problems[0].Rule, tc.rule) {
			t.Errorf("Validate(%s) = %+v, want field %q and a rule mentioning %q", tc.data, se.Problems, tc.field, tc.rule)
		}
	}
}

func TestCompileRejectsBadSchema(t *testing.T) {
	for _, doc := range []string{`{"type":`, `{"type":"no-such-type"}`} {
		if _, err := schema.Compile([]byte(doc)); err == nil {
			t.Errorf("Compile(%s) = nil error", doc)
		}
	}
}
