package registry

import (
	"slices"
	"strings"
)

// Who answers what. An instance answers requests for the types its micro
// endpoints on P.invoke.*.<pattern> match (discovery fills
// [Instance.Answers]). Instances of one plugin share its queue group, so
// they never make a type ambiguous; two different plugins answering a type
// do.

// Ambiguity is a type (or pattern) one plugin answers that other plugins
// answer too: an invoke of it must name the plugin to ask.
type Ambiguity struct {
	Type    string   `json:"type"`
	Plugins []string `json:"plugins"` // every plugin answering it, this one included, sorted
}

// Answerers returns, sorted, the plugins with a running instance that
// answers requests for type typ.
func (r *Registry) Answerers(typ string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, in := range r.instances {
		if in.State != Running || slices.Contains(names, in.Plugin) {
			continue
		}
		for _, pattern := range in.Answers {
			if matchType(pattern, typ) {
				names = append(names, in.Plugin)
				break
			}
		}
	}
	slices.Sort(names)
	return names
}

// answerSets maps each plugin to the patterns its running instances answer.
type answerSets map[string]map[string]bool

// answersOf gathers what the running instances answer. r.mu is held.
func answersOf(instances map[string]*Instance) answerSets {
	sets := answerSets{}
	for _, in := range instances {
		if in.State != Running || len(in.Answers) == 0 {
			continue
		}
		if sets[in.Plugin] == nil {
			sets[in.Plugin] = map[string]bool{}
		}
		for _, p := range in.Answers {
			sets[in.Plugin][p] = true
		}
	}
	return sets
}

// of returns what plugin answers, and which of those types other plugins
// answer too: a pattern of another plugin that some type matches along with
// one of plugin's.
func (s answerSets) of(plugin string) ([]string, []Ambiguity) {
	answers := sorted(s[plugin])
	var ambiguous []Ambiguity
	for _, mine := range answers {
		names := []string{plugin}
		for other, patterns := range s {
			if other == plugin {
				continue
			}
			for theirs := range patterns {
				if overlap(mine, theirs) {
					names = append(names, other)
					break
				}
			}
		}
		if len(names) > 1 {
			slices.Sort(names)
			ambiguous = append(ambiguous, Ambiguity{Type: mine, Plugins: names})
		}
	}
	return answers, ambiguous
}

// matchType reports whether typ matches a pattern with NATS wildcards on
// whole dot-separated parts.
func matchType(pattern, typ string) bool {
	return overlap(pattern, typ) && !strings.ContainsAny(typ, "*>")
}

// overlap reports whether some type matches both patterns.
func overlap(a, b string) bool {
	for {
		atok, arest, amore := strings.Cut(a, ".")
		btok, brest, bmore := strings.Cut(b, ".")
		if atok == ">" || btok == ">" {
			return true
		}
		if atok != btok && atok != "*" && btok != "*" {
			return false
		}
		if !amore || !bmore {
			return amore == bmore
		}
		a, b = arest, brest
	}
}
