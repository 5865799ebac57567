package anydraft_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/internal/schema"
	"github.com/plugbus/plugbus/internal/schema/anydraft"
)

// Generated schemas and documents of drafts plugin-kit does not check are
// checked here, each failure located.
func TestValidate(t *testing.T) {
	type greet struct {
		Name string   `json:"name"`
		Tags []string `json:"tags,omitempty"`
	}
	gv, err := schema.For[greet]("urn:plugbus:schema:p:1:com.example.greet.requested")
	if err != nil {
		t.Fatal(err)
	}
	generated := gv.Doc()
	draft4 := `{"$schema":"http://json-schema.org/draft-04/schema#","type":"object","properties":{"n":{"type":"integer","maximum":5,"exclusiveMaximum":true}}}`
	for _, tc := range []struct {
		doc, data, field, rule string
	}{
		{string(generated), `{"name":5}`, "name", "got number, want string"},
		{string(generated), `{}`, "", "name"},
		{string(generated), `{"name":"Ada","tags":[1]}`, "tags.0", "string"},
		{string(generated), `{"name":`, "", "JSON"},
		{draft4, `{"n":5}`, "n", "5"},
		{draft4, `{"n":"x"}`, "n", "integer"},
	} {
		v, err := anydraft.Compile([]byte(tc.doc))
		if err != nil {
			t.Fatalf("Compile(%s): %v", tc.doc, err)
		}
		err = v.Validate([]byte(tc.data))
		var se *schema.Error
		if !errors.As(err, &se) {
			t.Errorf("Validate(%s) = %v, want a *schema.Error", tc.data, err)
			continue
		}
		if se.Problems[0].Field != tc.field || !strings.Contains(se.Problems[0].Rule, tc.rule) {
			t.Errorf("Validate(%s) against %s = %+v, want field %q and a rule mentioning %q", tc.data, tc.doc, se.Problems, tc.field, tc.rule)
		}
	}
	v, err := anydraft.Compile([]byte(draft4))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate([]byte(`{"n":4}`)); err != nil {
		t.Errorf("Validate({\"n\":4}) = %v, want nil", err)
	}
}

func TestCompileRejectsBadSchema(t *testing.T) {
	for _, doc := range []string{`{"type":`, `{"type":"no-such-type"}`} {
		if _, err := anydraft.Compile([]byte(doc)); err == nil {
			t.Errorf("Compile(%s) = nil error", doc)
		}
	}
}
