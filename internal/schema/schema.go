// Package schema generates JSON Schemas from Go types and checks event data
// against them in plugins, for plugin-kit's typed handlers and declared
// schemas; the coordinator's HTTP ingest checks with package anydraft.
//
// Both generation and checking use github.com/google/jsonschema-go (draft
// 2020-12 and draft-07, no dependencies beyond go-cmp, generics-native:
// For[T]), which costs a plugin process almost nothing at start. Package
// anydraft's validator, which implements every draft a plugin in another
// language may declare, compiles five drafts' meta-schemas in its package
// init, about 9 ms of every start of every program that links it
// (docs/benchmarks-notes.md), so plugins do not link it.
package schema

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	gen "github.com/google/jsonschema-go/jsonschema"
)

// For returns the validator of the JSON Schema of the JSON encoding of T,
// whose document ([Validator.Doc]) has $id set to id. Objects accept
// properties the type does not know, as encoding/json ignores them, so a
// caller that sends a newer version's fields still reaches an older
// plugin; fields without omitempty or omitzero are required.
func For[T any](id string) (*Validator, error) {
	return ForType(reflect.TypeFor[T](), id)
}

// ForType is [For] for a reflect.Type. It checks data against the schema
// it generated, without decoding its document again as [Compile] would,
// and writes the document itself (appendDoc) rather than with
// encoding/json, whose first use of the large schema type costs every
// plugin's start about 2 ms of CPU on the loaded machine
// (docs/benchmarks-notes.md, cold start).
func ForType(t reflect.Type, id string) (*Validator, error) {
	s, err := gen.ForType(t, &gen.ForOptions{})
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	openObjects(s)
	s.ID = id
	s.Schema = "https://json-schema.org/draft/2020-12/schema"
	doc, ok := appendDoc(nil, s)
	if !ok {
		if doc, err = json.Marshal(s); err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return &Validator{schema: s, resolved: rs, doc: doc}, nil
}

// openObjects drops the "no other properties" rule the generator writes
// for every struct.
func openObjects(s *gen.Schema) {
	if s == nil {
		return
	}
	s.AdditionalProperties = nil
	for _, p := range s.Properties {
		openObjects(p)
	}
	openObjects(s.Items)
	for _, d := range s.Defs {
		openObjects(d)
	}
	for _, d := range s.Definitions {
		openObjects(d)
	}
}

// A Validator checks JSON data against one schema document of draft
// 2020-12 or draft-07. It is safe for concurrent use.
type Validator struct {
	schema   *gen.Schema
	resolved *gen.Resolved
	doc      []byte
}

// Drafts whose documents [Compile] takes: a document naming another one in
// its $schema is refused (the coordinator checks every draft, with package
// anydraft).
var drafts = []string{
	"", // no $schema: draft 2020-12
	"https://json-schema.org/draft/2020-12/schema",
	"http://json-schema.org/draft-07/schema#",
	"https://json-schema.org/draft-07/schema#",
}

// Compile compiles a JSON Schema document of draft 2020-12 or draft-07. A
// document that is not JSON, not a valid schema or of another draft is an
// error naming the reason.
func Compile(doc []byte) (*Validator, error) {
	s := new(gen.Schema)
	if err := json.Unmarshal(doc, s); err != nil {
		return nil, fmt.Errorf("schema: not a JSON Schema document: %w", err)
	}
	if !slices.Contains(drafts, s.Schema) {
		return nil, fmt.Errorf("schema: $schema %q: plugin-kit checks data against draft 2020-12 and draft-07 only", s.Schema)
	}
	if err := checkTypes(s); err != nil {
		return nil, err
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return &Validator{schema: s, resolved: rs, doc: doc}, nil
}

// jsonTypes are the values of the type keyword.
var jsonTypes = []string{"null", "boolean", "object", "array", "number", "integer", "string"}

// checkTypes refuses type keywords naming no JSON type in s and its
// subschemas, which the validator would take and never match (it does not
// check documents against the meta-schema; the decoding of the document
// catches keywords of the wrong JSON type).
func checkTypes(s *gen.Schema) error {
	if s == nil {
		return nil
	}
	for _, t := range append([]string{s.Type}, s.Types...) {
		if t != "" && !slices.Contains(jsonTypes, t) {
			return fmt.Errorf("schema: type %q is not a JSON type (%s)", t, strings.Join(jsonTypes, ", "))
		}
	}
	subs := []*gen.Schema{s.Items, s.AdditionalItems, s.AdditionalProperties, s.PropertyNames, s.Contains,
		s.UnevaluatedItems, s.UnevaluatedProperties, s.Not, s.If, s.Then, s.Else}
	for _, list := range [][]*gen.Schema{s.ItemsArray, s.PrefixItems, s.AllOf, s.AnyOf, s.OneOf} {
		subs = append(subs, list...)
	}
	for _, m := range []map[string]*gen.Schema{s.Properties, s.PatternProperties, s.Defs, s.Definitions, s.DependentSchemas} {
		subs = append(subs, slices.Collect(maps.Values(m))...)
	}
	for _, sub := range subs {
		if err := checkTypes(sub); err != nil {
			return err
		}
	}
	return nil
}

// Doc returns the schema document the validator was compiled from.
func (v *Validator) Doc() []byte { return v.doc }

// Validate checks data, a JSON document. The error, when there is one, is
// an [*Error].
func (v *Validator) Validate(data []byte) error {
	var inst any
	if err := json.Unmarshal(data, &inst); err != nil {
		return &Error{Problems: []Problem{{Rule: "must be JSON: " + err.Error()}}}
	}
	err := v.resolved.Validate(inst)
	if err == nil {
		return nil
	}
	out := &Error{}
	locate(v.schema, inst, nil, out)
	if len(out.Problems) == 0 {
		// A rule locate does not follow (a pattern, a bound, a $ref):
		// the validator's own words, without the schema locations it
		// prefixes them with.
		msg := err.Error()
		if i := strings.LastIndex(msg, ": validating "); i >= 0 {
			msg = msg[i+2:]
		}
		if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "validating ") {
			msg = rest
		}
		out.Problems = append(out.Problems, Problem{Rule: msg})
	}
	return out
}

// locate names the values of inst that break the type and required rules
// of s and the schemas of its properties and items, with their paths: the
// rules that typed handlers' generated schemas are made of.
func locate(s *gen.Schema, inst any, path []string, out *Error) {
	if s == nil {
		return
	}
	field := strings.Join(path, ".")
	got := jsonType(inst)
	if want := s.Types; s.Type != "" || len(want) > 0 {
		if s.Type != "" {
			want = []string{s.Type}
		}
		if !slices.Contains(want, got) && !(got == "number" && isInteger(inst) && slices.Contains(want, "integer")) &&
			!(got == "number" && slices.Contains(want, "number")) {
			out.Problems = append(out.Problems, Problem{Field: field, Rule: "got " + got + ", want " + strings.Join(want, " or ")})
			return
		}
	}
	switch inst := inst.(type) {
	case map[string]any:
		for _, name := range s.Required {
			if _, ok := inst[name]; !ok {
				out.Problems = append(out.Problems, Problem{Field: field, Rule: fmt.Sprintf("missing property %q", name)})
			}
		}
		for _, name := range slices.Sorted(maps.Keys(inst)) {
			if ps, ok := s.Properties[name]; ok {
				locate(ps, inst[name], append(path, name), out)
			} else {
				locate(s.AdditionalProperties, inst[name], append(path, name), out)
			}
		}
	case []any:
		for i, item := range inst {
			locate(s.Items, item, append(path, strconv.Itoa(i)), out)
		}
	}
}

// jsonType is the JSON type of a value encoding/json decoded into an any.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

// isInteger reports whether v is a number without a fractional part.
func isInteger(v any) bool {
	f, ok := v.(float64)
	return ok && f == math.Trunc(f)
}

// A Problem is one rule the data broke.
type Problem struct {
	// Field is the dotted path of the value that broke the rule, such as
	// "name" or "items.2.price"; empty for the whole document.
	Field string `json:"field"`
	// Rule says what was wrong, as the validator words it.
	Rule string `json:"rule"`
}

// Error is data that does not match its schema.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Field == "" {
			parts[i] = p.Rule
		} else {
			parts[i] = fmt.Sprintf("field %q: %s", p.Field, p.Rule)
		}
	}
	return "data does not match the type's schema: " + strings.Join(parts, "; ")
}

// appendDoc appends the JSON document of s, byte for byte as json.Marshal
// writes it, when s and its subschemas use only the keywords that schemas
// generated from Go types use; otherwise it returns false. json.Marshal's
// first use of the large schema type builds its encoders by reflection:
// 1-2.5 ms of a plugin's start on the loaded machine
// (docs/benchmarks-notes.md, cold start); this writes it directly.
func appendDoc(b []byte, s *gen.Schema) ([]byte, bool) {
	if s == nil {
		return append(b, "null"...), true
	}
	rest := *s
	rest.Not = nil
	if s.Not != nil && reflect.ValueOf(*s.Not).IsZero() && reflect.ValueOf(rest).IsZero() {
		return append(b, "false"...), true // as Schema.MarshalJSON writes {"not": {}}
	}
	rest.Not = s.Not
	rest.Type, rest.Types, rest.Properties, rest.PropertyOrder, rest.Items = "", nil, nil, nil, nil
	rest.ID, rest.Schema, rest.Description, rest.Minimum, rest.Maximum = "", "", "", nil, nil
	rest.MinItems, rest.MaxItems, rest.Required, rest.AdditionalProperties = nil, nil, nil, nil
	if !reflect.ValueOf(rest).IsZero() || s.Type != "" && s.Types != nil || hasDuplicates(s.PropertyOrder) {
		return b, false // json.Marshal writes it, or says what is wrong
	}
	start := len(b)
	b = append(b, '{')
	key := func(name string) {
		if len(b) > start+1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	ok := true
	sub := func(name string, s *gen.Schema) {
		if s != nil && ok {
			key(name)
			b, ok = appendDoc(b, s)
		}
	}
	switch {
	case s.Type != "":
		key("type")
		b = appendString(b, s.Type)
	case s.Types != nil:
		key("type")
		b = appendStrings(b, s.Types)
	}
	if s.Properties != nil {
		key("properties")
		b = append(b, '{')
		names := slices.DeleteFunc(slices.Clone(s.PropertyOrder), func(n string) bool {
			_, in := s.Properties[n]
			return !in
		})
		var remaining []string
		for n := range s.Properties {
			if !slices.Contains(names, n) {
				remaining = append(remaining, n)
			}
		}
		slices.Sort(remaining)
		for i, n := range append(names, remaining...) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, n)
			b = append(b, ':')
			if b, ok = appendDoc(b, s.Properties[n]); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	sub("items", s.Items)
	if s.ID != "" {
		key("$id")
		b = appendString(b, s.ID)
	}
	if s.Schema != "" {
		key("$schema")
		b = appendString(b, s.Schema)
	}
	if s.Description != "" {
		key("description")
		b = appendString(b, s.Description)
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"minimum", s.Minimum}, {"maximum", s.Maximum}} {
		if f.v != nil {
			j, err := json.Marshal(*f.v)
			if err != nil {
				return b, false // NaN or an infinity: json.Marshal says why
			}
			key(f.name)
			b = append(b, j...)
		}
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"minItems", s.MinItems}, {"maxItems", s.MaxItems}} {
		if f.v != nil {
			key(f.name)
			b = strconv.AppendInt(b, int64(*f.v), 10)
		}
	}
	if len(s.Required) > 0 {
		key("required")
		b = appendStrings(b, s.Required)
	}
	sub("additionalProperties", s.AdditionalProperties)
	if !ok {
		return b, false
	}
	b = append(b, '}')
	if string(b[start:]) == "{}" {
		b = append(b[:start], "true"...) // as Schema.MarshalJSON writes an empty schema
	}
	return b, true
}

// hasDuplicates reports whether a name appears twice in names.
func hasDuplicates(names []string) bool {
	for i, n := range names {
		if slices.Contains(names[i+1:], n) {
			return true
		}
	}
	return false
}

// appendString appends s as a JSON string, escaped as json.Marshal does.
func appendString(b []byte, s string) []byte {
	j, _ := json.Marshal(s) // a string always encodes
	return append(b, j...)
}

// appendStrings appends ss as a JSON array of strings.
func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}
