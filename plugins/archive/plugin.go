// Package archive is a plugin that appends every event of configured types
// to a JSON-lines file, one CloudEvent in JSON format per line, rotating the
// file by size. See README.md; its program is in cmd/archive.
package archive

import (
	"errors"
	"strings"
	"unicode"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The plugin's name and version.
const (
	Name    = "archive"
	Version = "0.1.0"
)

func init() { pluginkit.Register(Name, New) }

// New returns the archive plugin with its settings (see README.md) defined
// on its flag set: -types, -dir, -max-bytes and -fsync, each bound to an
// environment variable. When it starts, it opens the archive they name; once
// it has stopped and every handler has returned, it closes the archive,
// which syncs the file.
func New() *pluginkit.Plugin {
	p := newPlugin()
	fs := p.Flags()
	types := fs.String("types", ">", "event type patterns to archive, comma-separated; NATS wildcards * and > allowed")
	p.BindEnv("types", "PLUGBUS_ARCHIVE_TYPES")
	dir := fs.String("dir", "archive", "directory of archive.jsonl and the rotated files (created if missing)")
	p.BindEnv("dir", "PLUGBUS_ARCHIVE_DIR")
	maxBytes := fs.Int64("max-bytes", 100<<20, "size at which archive.jsonl is rotated; 0: never")
	p.BindEnv("max-bytes", "PLUGBUS_ARCHIVE_MAX_BYTES")
	fsync := fs.Bool("fsync", false, "sync every event to disk before acknowledging it (survives power loss; slower)")
	p.BindEnv("fsync", "PLUGBUS_ARCHIVE_FSYNC")

	p.Setup(func(p *pluginkit.Plugin) error {
		patterns := strings.FieldsFunc(*types, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(patterns) == 0 {
			return errors.New("-types: no event type pattern")
		}
		a, err := Open(*dir, *maxBytes, *fsync)
		if err != nil {
			return err
		}
		p.Cleanup(a.Close)
		handle(p, a, patterns)
		return nil
	})
	return p
}

func newPlugin() *pluginkit.Plugin {
	return pluginkit.New(Name, Version, pluginkit.WithDescription("appends events to a JSON-lines file, rotated by size"))
}

// handle registers a for each type pattern, taking one event at a time, in
// the order of arrival. The archive observes only: it never answers a
// request, not even for an exact type, so it never stands in for the plugin
// that answers.
func handle(p *pluginkit.Plugin, a *Archiver, types []string) {
	for _, t := range types {
		p.Handle(t, a, pluginkit.Concurrency(1), pluginkit.ObserveOnly())
	}
}
