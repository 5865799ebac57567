package schema

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	gen "github.com/google/jsonschema-go/jsonschema"
)

type docInner struct {
	Note  string            `json:"note,omitempty" jsonschema:"a note with <html> & \"quotes\""`
	Tags  []string          `json:"tags"`
	Grid  [3]int8           `json:"grid"`
	Attrs map[string]string `json:"attrs,omitempty"`
}

type docOuter struct {
	Name    string     `json:"name"`
	Count   uint16     `json:"count,omitempty"`
	Ratio   float64    `json:"ratio"`
	OK      bool       `json:"ok"`
	Inner   docInner   `json:"inner"`
	Ptr     *docInner  `json:"ptr,omitempty"`
	List    []docInner `json:"list"`
	Any     any        `json:"any"`
	When    time.Time  `json:"when"`
	Raw     []byte     `json:"raw"`
	Ignored string     `json:"-"`
	Small   int8       `json:"small"`
}

// TestAppendDoc checks that appendDoc writes what json.Marshal writes, for
// generated schemas and hand-made ones, and leaves other keywords to it.
func TestAppendDoc(t *testing.T) {
	one, big := 1.0, 1e21
	two := 2
	var schemas []*gen.Schema
	for _, typ := range []reflect.Type{reflect.TypeFor[docOuter](), reflect.TypeFor[[]docOuter](), reflect.TypeFor[map[string]int](), reflect.TypeFor[string](), reflect.TypeFor[*uint64]()} {
		s, err := gen.ForType(typ, &gen.ForOptions{})
		if err != nil {
			t.Fatal(err)
		}
		schemas = append(schemas, s)
		opened := *s
		openObjects(&opened)
		opened.ID, opened.Schema = "urn:plugbus:schema:p:1.0.0:com.example.a", "https://json-schema.org/draft/2020-12/schema"
		schemas = append(schemas, &opened)
	}
	schemas = append(schemas,
		&gen.Schema{},
		&gen.Schema{Properties: map[string]*gen.Schema{}},
		&gen.Schema{Properties: map[string]*gen.Schema{"b": nil, "a": {}, "c": {Type: "string"}}, PropertyOrder: []string{"c", "missing", "b"}},
		&gen.Schema{Types: []string{"null", "array"}, Items: &gen.Schema{Minimum: &big, Maximum: &one}, MinItems: &two, MaxItems: &two},
		&gen.Schema{Types: []string{}},
		&gen.Schema{AdditionalProperties: &gen.Schema{}, Required: []string{"x<y"}},
		&gen.Schema{Items: &gen.Schema{Not: &gen.Schema{}}},
	)
	for _, s := range schemas {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendDoc(nil, s)
		if !ok {
			t.Errorf("appendDoc left %s to json.Marshal", want)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("appendDoc wrote\n%s\njson.Marshal\n%s", got, want)
		}
	}
	for _, s := range []*gen.Schema{
		{Pattern: "^a"},
		{Properties: map[string]*gen.Schema{"a": {Enum: []any{1}}}},
		{Items: &gen.Schema{Not: &gen.Schema{Type: "string"}}},
		{Not: &gen.Schema{}, Type: "string"},
		{Type: "string", Types: []string{"null"}},
		{Properties: map[string]*gen.Schema{"a": {}}, PropertyOrder: []string{"a", "a"}},
	} {
		if got, ok := appendDoc(nil, s); ok {
			t.Errorf("appendDoc wrote %s for a schema it does not know", got)
		}
	}
}
