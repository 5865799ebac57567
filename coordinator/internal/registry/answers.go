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
// answers requests for type typ. It looks typ up in the answer index,
// which is rebuilt only when what running instances answer changes: the
// HTTP API asks on every invoke, and scanning every instance's patterns
// under the registry's lock for each was proportional to the instances.
func (r *Registry) Answerers(typ string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answerIndex().answerers(typ)
}

// answerIndex returns the index of what running instances answer,
// rebuilt if it is stale. r.mu is held.
func (r *Registry) answerIndex() answerIndex {
	if r.answersStale {
		r.answers, r.answersStale = answersOf(r.instances), false
	}
	return r.answers
}

// answerIndex says who answers what: the patterns each plugin's running
// instances answer, and, to find the other plugins answering a type
// without comparing it with every pattern of every plugin, the plugins by
// each type they answer exactly and the patterns with wildcards apart.
// (Compared pairwise, 100 plugins answering 100 types each cost 10^8
// comparisons per listing, made under the registry's lock.)
type answerIndex struct {
	byPlugin map[string]map[string]bool // plugin -> the patterns it answers
	exact    map[string][]string        // pattern without wildcards -> the plugins answering it
	wild     []answered                 // the patterns with wildcards
}

// answered is a pattern with wildcards and the plugin answering it.
type answered struct{ plugin, pattern string }

// answersOf indexes what the running instances answer. r.mu is held.
func answersOf(instances map[string]*Instance) answerIndex {
	idx := answerIndex{byPlugin: map[string]map[string]bool{}, exact: map[string][]string{}}
	for _, in := range instances {
		if in.State != Running || len(in.Answers) == 0 {
			continue
		}
		if idx.byPlugin[in.Plugin] == nil {
			idx.byPlugin[in.Plugin] = map[string]bool{}
		}
		for _, p := range in.Answers {
			idx.byPlugin[in.Plugin][p] = true
		}
	}
	for plugin, patterns := range idx.byPlugin {
		for p := range patterns {
			if isWild(p) {
				idx.wild = append(idx.wild, answered{plugin, p})
			} else {
				idx.exact[p] = append(idx.exact[p], plugin)
			}
		}
	}
	return idx
}

// of returns what plugin answers, and which of those types other plugins
// answer too: a pattern of another plugin that some type matches along with
// one of plugin's.
func (idx answerIndex) of(plugin string) ([]string, []Ambiguity) {
	answers := sorted(idx.byPlugin[plugin])
	var ambiguous []Ambiguity
	for _, mine := range answers {
		others := map[string]bool{}
		if isWild(mine) {
			for p, plugins := range idx.exact {
				if overlap(mine, p) {
					for _, other := range plugins {
						others[other] = true
					}
				}
			}
		} else {
			for _, other := range idx.exact[mine] {
				others[other] = true
			}
		}
		for _, w := range idx.wild {
			if overlap(mine, w.pattern) {
				others[w.plugin] = true
			}
		}
		delete(others, plugin)
		if len(others) > 0 {
			others[plugin] = true
			ambiguous = append(ambiguous, Ambiguity{Type: mine, Plugins: sorted(others)})
		}
	}
	return answers, ambiguous
}

// answerers returns, sorted, the plugins answering requests for type typ:
// those answering it exactly and those with a pattern matching it.
func (idx answerIndex) answerers(typ string) []string {
	if isWild(typ) {
		return nil // no type to request
	}
	names := slices.Clone(idx.exact[typ])
	for _, w := range idx.wild {
		if matchType(w.pattern, typ) && !slices.Contains(names, w.plugin) {
			names = append(names, w.plugin)
		}
	}
	slices.Sort(names)
	return names
}

// isWild reports whether a pattern has a NATS wildcard.
func isWild(pattern string) bool { return strings.ContainsAny(pattern, "*>") }

// matchType reports whether typ matches a pattern with NATS wildcards on
// whole dot-separated parts.
func matchType(pattern, typ string) bool {
	return overlap(pattern, typ) && !isWild(typ)
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
