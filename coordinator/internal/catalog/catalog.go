// Package catalog lists the event types the registry's plugins emit, handle
// and declare schemas for, and checks event data against those schemas
// where events enter through the coordinator.
package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/plugbus/plugbus/coordinator/internal/registry"
	"github.com/plugbus/plugbus/internal/schema/anydraft"
)

// Type is one entry of the catalogue.
type Type struct {
	// Type is the event type, or a pattern with wildcards ("com.example.>")
	// that a plugin handles.
	Type    string `json:"type"`
	Pattern bool   `json:"pattern,omitempty"`
	// EmittedBy, HandledBy and AnsweredBy name plugins. HandledBy counts
	// plugins whose pattern matches the type.
	EmittedBy  []string `json:"emitted_by,omitempty"`
	HandledBy  []string `json:"handled_by,omitempty"`
	AnsweredBy []string `json:"answered_by,omitempty"`
	// Schema is the JSON Schema of the type's data when the plugins that
	// declare one agree.
	Schema json.RawMessage `json:"schema,omitempty"`
	// Schemas holds each plugin's schema when they disagree, and Conflict
	// says so.
	Schemas  map[string]json.RawMessage `json:"schemas,omitempty"`
	Conflict string                     `json:"conflict,omitempty"`
}

// Catalog builds the catalogue from the registry's plugins, at most once
// per refresh interval, and keeps the compiled schemas. It is safe for
// concurrent use.
type Catalog struct {
	plugins func() []registry.Plugin
	every   time.Duration

	mu      sync.Mutex
	built   time.Time
	types   []Type
	checks  map[string][]*anydraft.Validator // exact type -> its distinct schemas
	byDoc   map[string]*anydraft.Validator   // compiled schemas, by document
	invalid map[string]string                // documents that do not compile -> why
}

// New returns a catalogue of what plugins returns, rebuilt at most once
// every refresh (the registry's poll interval is a good choice).
func New(plugins func() []registry.Plugin, refresh time.Duration) *Catalog {
	return &Catalog{plugins: plugins, every: refresh, byDoc: map[string]*anydraft.Validator{}, invalid: map[string]string{}}
}

// Types returns the catalogue, sorted by type.
func (c *Catalog) Types() []Type {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refresh()
	return slices.Clone(c.types)
}

// Check checks data, of an event of type typ, against every schema declared
// for typ. It returns nil when none is declared; otherwise a
// *schema.Error (package internal/schema) naming the field and the rule.
func (c *Catalog) Check(typ string, data []byte) error {
	c.mu.Lock()
	c.refresh()
	checks := c.checks[typ]
	c.mu.Unlock()
	for _, v := range checks {
		if err := v.Validate(data); err != nil {
			return err
		}
	}
	return nil
}

// refresh rebuilds the catalogue when it is older than the interval.
func (c *Catalog) refresh() {
	if !c.built.IsZero() && time.Since(c.built) < c.every {
		return
	}
	c.built = time.Now()
	c.types, c.checks = c.build(c.plugins())
}

type entry struct {
	emitted, handled, answered map[string]bool
	schemas                    map[string]string // plugin -> document
}

func (c *Catalog) build(plugins []registry.Plugin) ([]Type, map[string][]*anydraft.Validator) {
	entries := map[string]*entry{}
	get := func(typ string) *entry {
		e := entries[typ]
		if e == nil {
			e = &entry{map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]string{}}
			entries[typ] = e
		}
		return e
	}
	var patterns []string
	for _, p := range plugins {
		for _, t := range p.Emits {
			get(t).emitted[p.Name] = true
		}
		for _, t := range p.Answers {
			get(t).answered[p.Name] = true
		}
		for _, t := range p.Handles {
			get(t).handled[p.Name] = true
			if isPattern(t) {
				patterns = append(patterns, t)
			}
		}
		for _, in := range p.Instances {
			for t, doc := range in.Schemas {
				if strings.HasPrefix(strings.TrimSpace(doc), "{") {
					get(t).schemas[p.Name] = doc
				}
			}
		}
	}
	// A plugin handling a pattern handles every known type it matches.
	for _, pat := range patterns {
		for typ, e := range entries {
			if !isPattern(typ) && server.SubjectMatchesFilter(typ, pat) {
				for name := range entries[pat].handled {
					e.handled[name] = true
				}
			}
		}
	}
	types := make([]Type, 0, len(entries))
	checks := map[string][]*anydraft.Validator{}
	for typ, e := range entries {
		t := Type{Type: typ, Pattern: isPattern(typ), EmittedBy: keys(e.emitted), HandledBy: keys(e.handled), AnsweredBy: keys(e.answered)}
		distinct := map[string][]string{} // normalised document -> plugins
		for name, doc := range e.schemas {
			n := normalise(doc)
			distinct[n] = append(distinct[n], name)
		}
		switch len(distinct) {
		case 0:
		case 1:
			for n := range distinct {
				t.Schema = json.RawMessage(n)
			}
		default:
			t.Schemas = map[string]json.RawMessage{}
			var groups []string
			for n, names := range distinct {
				sort.Strings(names)
				for _, name := range names {
					t.Schemas[name] = json.RawMessage(n)
				}
				groups = append(groups, strings.Join(names, ", "))
			}
			sort.Strings(groups)
			t.Conflict = fmt.Sprintf("plugins declare %d different schemas for this type: %s", len(distinct), strings.Join(groups, " / "))
		}
		for n := range distinct {
			if v := c.compile(n); v != nil && !t.Pattern {
				checks[typ] = append(checks[typ], v)
			}
		}
		types = append(types, t)
	}
	slices.SortFunc(types, func(a, b Type) int { return strings.Compare(a.Type, b.Type) })
	return types, checks
}

// compile returns the validator of a normalised document, compiled once;
// nil when it does not compile (a plugin's bad schema checks nothing).
func (c *Catalog) compile(doc string) *anydraft.Validator {
	if v, ok := c.byDoc[doc]; ok {
		return v
	}
	if _, bad := c.invalid[doc]; bad {
		return nil
	}
	v, err := anydraft.Compile([]byte(doc))
	if err != nil {
		c.invalid[doc] = err.Error()
		return nil
	}
	c.byDoc[doc] = v
	return v
}

// normalise returns the schema document without its $id, which names the
// plugin and version declaring it, compacted with sorted keys, so that two
// plugins declaring the same schema agree.
func normalise(doc string) string {
	var v map[string]any
	if json.Unmarshal([]byte(doc), &v) != nil {
		return doc
	}
	delete(v, "$id")
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return doc
	}
	return strings.TrimSpace(b.String())
}

func isPattern(t string) bool { return strings.ContainsAny(t, "*>") }

func keys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
