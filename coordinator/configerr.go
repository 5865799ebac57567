package coordinator

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Errors from sigs.k8s.io/yaml speak of JSON (it converts YAML to JSON
// before decoding) and give no line; these patterns find what they are
// about, so that configError can name the file's line instead.
var (
	unknownFieldRe = regexp.MustCompile(`unknown field "([^"]*)"`)
	fieldTypeRe    = regexp.MustCompile(`cannot unmarshal (\S+) into Go struct field \w+\.(\S+) of type (\S+)`)
)

// configError rewrites an error from decoding the YAML configuration file
// path (contents data) so that it names the file, the line and the field,
// and for an unknown field the nearest known one.
func configError(path string, data []byte, err error) error {
	msg := err.Error()
	for _, noise := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.ReplaceAll(msg, noise, "")
	}
	var root yamlv3.Node
	if yamlv3.Unmarshal(data, &root) != nil {
		return fmt.Errorf("config %s: %s", path, msg) // a syntax error: the message has the line
	}
	if m := unknownFieldRe.FindStringSubmatch(msg); m != nil {
		field := m[1]
		line, known, ok := findUnknown(&root, reflect.TypeOf(Config{}), field)
		if !ok {
			return fmt.Errorf("config %s: unknown field %q", path, field)
		}
		hint := ""
		if near := nearest(field, known); near != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", near)
		}
		return fmt.Errorf("config %s:%d: unknown field %q%s; known fields here: %s", path, line, field, hint, strings.Join(known, ", "))
	}
	if m := fieldTypeRe.FindStringSubmatch(msg); m != nil {
		keys := strings.Split(m[2], ".")
		if line, ok := findPath(&root, keys); ok {
			return fmt.Errorf("config %s:%d: field %s: want %s, not %s", path, line, keys[len(keys)-1], m[3], m[1])
		}
	}
	return fmt.Errorf("config %s: %s", path, msg)
}

// findUnknown looks in the YAML node for a mapping key named field that
// the Go type typ decoded there does not have, and returns its line and
// the fields that type does have.
func findUnknown(n *yamlv3.Node, typ reflect.Type, field string) (int, []string, bool) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			if line, known, ok := findUnknown(c, typ, field); ok {
				return line, known, true
			}
		}
	case yamlv3.SequenceNode:
		if typ.Kind() != reflect.Slice && typ.Kind() != reflect.Array {
			return 0, nil, false
		}
		for _, c := range n.Content {
			if line, known, ok := findUnknown(c, typ.Elem(), field); ok {
				return line, known, true
			}
		}
	case yamlv3.MappingNode:
		if typ.Kind() == reflect.Map {
			for i := 1; i < len(n.Content); i += 2 {
				if line, known, ok := findUnknown(n.Content[i], typ.Elem(), field); ok {
					return line, known, true
				}
			}
			return 0, nil, false
		}
		if typ.Kind() != reflect.Struct {
			return 0, nil, false
		}
		fields := jsonFields(typ)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			ft, ok := fields[key.Value]
			if !ok {
				if key.Value == field {
					return key.Line, slices.Sorted(maps.Keys(fields)), true
				}
				continue
			}
			if line, known, ok := findUnknown(n.Content[i+1], ft, field); ok {
				return line, known, true
			}
		}
	}
	return 0, nil, false
}

// findPath returns the line of the first mapping key reached by following
// keys (through any sequences on the way).
func findPath(n *yamlv3.Node, keys []string) (int, bool) {
	switch n.Kind {
	case yamlv3.DocumentNode, yamlv3.SequenceNode:
		for _, c := range n.Content {
			if line, ok := findPath(c, keys); ok {
				return line, true
			}
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value != keys[0] {
				continue
			}
			if len(keys) == 1 {
				return n.Content[i].Line, true
			}
			return findPath(n.Content[i+1], keys[1:])
		}
	}
	return 0, false
}

// jsonFields maps the names encoding/json decodes into typ's fields (its
// tags, embedded structs inlined) to the fields' types.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range typ.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// nearest returns the known name closest to name by edit distance, when
// it is close enough to be a likely typo; "" otherwise.
func nearest(name string, known []string) string {
	limit := 1 // edits a typo may take
	if len(name) >= 6 {
		limit = 2
	}
	best, bestDist := "", limit+1
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, with a swap
// of two neighbouring letters counted as one edit ("nmae" for "name").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
