// Package anydraft checks event data against JSON Schemas of any draft, for
// the coordinator, which checks data entering over HTTP against the schemas
// plugins in any language declare.
//
// It uses github.com/santhosh-tekuri/jsonschema/v6, which implements drafts
// 4, 6, 7, 2019-09 and 2020-12 and reports each failure with the location of
// the value and the rule it broke. That package compiles the meta-schemas of
// all five drafts in its init, in every program that links it (about 9 ms
// and 1.7 MB of every start, docs/benchmarks-notes.md), so plugin-kit does
// not import this package: plugins check their data with package schema.
package anydraft

import (
	"bytes"
	"fmt"
	"strings"

	check "github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/plugbus/plugbus/internal/schema"
)

// A Validator checks JSON data against one compiled schema. It is safe for
// concurrent use.
type Validator struct {
	schema  *check.Schema
	printer *message.Printer
}

// Compile compiles a JSON Schema document of any draft. A document that is
// not JSON or not a valid schema is an error naming the reason.
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
	return &Validator{schema: s, printer: message.NewPrinter(language.English)}, nil
}

// Validate checks data, a JSON document. The error, when there is one, is
// a [*schema.Error].
func (v *Validator) Validate(data []byte) error {
	inst, err := check.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &schema.Error{Problems: []schema.Problem{{Rule: "must be JSON: " + err.Error()}}}
	}
	err = v.schema.Validate(inst)
	if err == nil {
		return nil
	}
	ve, ok := err.(*check.ValidationError)
	if !ok {
		return &schema.Error{Problems: []schema.Problem{{Rule: err.Error()}}}
	}
	out := &schema.Error{}
	v.leaves(ve, out)
	return out
}

// leaves collects the innermost failures, which name the field and rule.
func (v *Validator) leaves(ve *check.ValidationError, out *schema.Error) {
	if len(ve.Causes) == 0 {
		out.Problems = append(out.Problems, schema.Problem{
			Field: strings.Join(ve.InstanceLocation, "."),
			Rule:  ve.ErrorKind.LocalizedString(v.printer),
		})
		return
	}
	for _, c := range ve.Causes {
		v.leaves(c, out)
	}
}
