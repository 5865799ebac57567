// Package schema generates JSON Schemas from Go types and checks event data
// against them, for plugin-kit's typed handlers and the coordinator's HTTP
// ingest.
//
// Generation uses github.com/google/jsonschema-go (draft 2020-12, no
// dependencies beyond go-cmp, generics-native: For[T]); checking uses
// github.com/santhosh-tekuri/jsonschema/v6, which implements every draft a
// plugin in another language may declare and reports each failure with the
// location of the value and the rule it broke.
package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	gen "github.com/google/jsonschema-go/jsonschema"
	check "github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// For returns the JSON Schema document of the JSON encoding of T, with $id
// set to id. Objects accept properties the type does not know, as
// encoding/json ignores them, so a caller that sends a newer version's
// fields still reaches an older plugin; fields without omitempty or
// omitzero are required.
func For[T any](id string) ([]byte, error) {
	return ForType(reflect.TypeFor[T](), id)
}

// ForType is [For] for a reflect.Type.
func ForType(t reflect.Type, id string) ([]byte, error) {
	s, err := gen.ForType(t, &gen.ForOptions{})
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	openObjects(s)
	s.ID = id
	s.Schema = "https://json-schema.org/draft/2020-12/schema"
	return json.Marshal(s)
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

// A Validator checks JSON data against one compiled schema. It is safe for
// concurrent use.
type Validator struct {
	schema  *check.Schema
	printer *message.Printer
	doc     []byte
}

// Compile compiles a JSON Schema document. A document that is not JSON or
// not a valid schema is an error naming the reason.
func Compile(doc []byte) (*Validator, error) {
	v, err := check.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("schema: not JSON: %w", err)
	}
	const url = "urn:plugbus:schema" // where the document is filed in the compiler
	c := check.NewCompiler()
	if err := c.AddResource(url, v); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return &Validator{schema: s, printer: message.NewPrinter(language.English), doc: doc}, nil
}

// Doc returns the schema document the validator was compiled from.
func (v *Validator) Doc() []byte { return v.doc }

// Validate checks data, a JSON document. The error, when there is one, is
// an [*Error].
func (v *Validator) Validate(data []byte) error {
	inst, err := check.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &Error{Problems: []Problem{{Rule: "must be JSON: " + err.Error()}}}
	}
	err = v.schema.Validate(inst)
	if err == nil {
		return nil
	}
	ve, ok := err.(*check.ValidationError)
	if !ok {
		return &Error{Problems: []Problem{{Rule: err.Error()}}}
	}
	out := &Error{}
	v.leaves(ve, out)
	return out
}

// leaves collects the innermost failures, which name the field and rule.
func (v *Validator) leaves(ve *check.ValidationError, out *Error) {
	if len(ve.Causes) == 0 {
		out.Problems = append(out.Problems, Problem{
			Field: strings.Join(ve.InstanceLocation, "."),
			Rule:  ve.ErrorKind.LocalizedString(v.printer),
		})
		return
	}
	for _, c := range ve.Causes {
		v.leaves(c, out)
	}
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
