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
	generated, err := schema.For[greet]("urn:plugbus:schema:com.example.greet.requested:1")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(generated.Doc(), &m); err != nil {
		t.Fatal(err)
	}
	if m["$id"] != "urn:plugbus:schema:com.example.greet.requested:1" {
		t.Errorf("$id = %v", m["$id"])
	}
	// The generated schema checks data as its document does once compiled.
	compiled, err := schema.Compile(generated.Doc())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*schema.Validator{generated, compiled} {
		checkGreet(t, v)
	}
}

func checkGreet(t *testing.T, v *schema.Validator) {
	t.Helper()
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
	for _, doc := range []string{`{"type":`, `{"type":"no-such-type"}`, `{"properties":{"a":{"items":{"type":"str"}}}}`, `{"minimum":"x"}`} {
		if _, err := schema.Compile([]byte(doc)); err == nil {
			t.Errorf("Compile(%s) = nil error", doc)
		}
	}
}

// A declared document of draft 2020-12 or draft-07 is checked, with the
// rules locate does not follow in the validator's own words; other drafts
// are refused (the coordinator checks them with package anydraft).
func TestCompileDrafts(t *testing.T) {
	for _, tc := range []struct {
		doc, bad, field, rule string
	}{
		{`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"n":{"type":"integer"}}}`, `{"n":1.5}`, "n", "got number, want integer"},
		{`{"type":"object","properties":{"a":{"type":"object","required":["b"],"properties":{"b":{"type":"string"}}}}}`, `{"a":{}}`, "a", `missing property "b"`},
		{`{"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":["null","string"]}}}}}`, `{"a":{"b":true}}`, "a.b", "got boolean, want null or string"},
		{`{"type":"object","additionalProperties":{"type":"integer"}}`, `{"x":1,"y":"z"}`, "y", "got string, want integer"},
		{`{"type":"string","pattern":"^a"}`, `"b"`, "", "pattern"},
		{`{"$defs":{"n":{"type":"integer"}},"type":"object","properties":{"n":{"$ref":"#/$defs/n"}}}`, `{"n":"x"}`, "", "integer"},
	} {
		v, err := schema.Compile([]byte(tc.doc))
		if err != nil {
			t.Errorf("Compile(%s): %v", tc.doc, err)
			continue
		}
		err = v.Validate([]byte(tc.bad))
		var se *schema.Error
		if !errors.As(err, &se) || len(se.Problems) != 1 {
			t.Errorf("Validate(%s) against %s = %v, want one problem", tc.bad, tc.doc, err)
			continue
		}
		if p := se.Problems[0]; p.Field != tc.field || !strings.Contains(p.Rule, tc.rule) {
			t.Errorf("Validate(%s) against %s = %+v, want field %q and a rule mentioning %q", tc.bad, tc.doc, p, tc.field, tc.rule)
		}
	}
	_, err := schema.Compile([]byte(`{"$schema":"http://json-schema.org/draft-04/schema#","type":"object"}`))
	if err == nil || !strings.Contains(err.Error(), "draft-04") {
		t.Errorf("Compile(draft-04) = %v, want an error naming its $schema", err)
	}
}
