// Command archive appends every event of configured types to a JSON-lines
// file, one CloudEvent in JSON format per line, rotating the file by size.
// See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"unicode"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

const (
	name    = "archive"
	version = "0.1.0"
)

func main() {
	types := flag.String("types", ">", "event type patterns to archive, comma-separated; NATS wildcards * and > allowed")
	pluginkit.BindEnv("types", "PLUGBUS_ARCHIVE_TYPES")
	dir := flag.String("dir", "archive", "directory of archive.jsonl and the rotated files (created if missing)")
	pluginkit.BindEnv("dir", "PLUGBUS_ARCHIVE_DIR")
	maxBytes := flag.Int64("max-bytes", 100<<20, "size at which archive.jsonl is rotated; 0: never")
	pluginkit.BindEnv("max-bytes", "PLUGBUS_ARCHIVE_MAX_BYTES")
	fsync := flag.Bool("fsync", false, "sync every event to disk before acknowledging it (survives power loss; slower)")
	pluginkit.BindEnv("fsync", "PLUGBUS_ARCHIVE_FSYNC")

	var a *Archiver
	pluginkit.MainSetup(newPlugin(), func(p *pluginkit.Plugin) (err error) {
		patterns := strings.FieldsFunc(*types, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(patterns) == 0 {
			return errors.New("-types: no event type pattern")
		}
		if a, err = Open(*dir, *maxBytes, *fsync); err != nil {
			return err
		}
		handle(p, a, patterns)
		return nil
	})
	// MainSetup returns after a clean stop, once every handler has
	// returned: then nothing more can be written, and Close syncs the file.
	if err := a.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func newPlugin() *pluginkit.Plugin {
	return pluginkit.New(name, version, pluginkit.WithDescription("appends events to a JSON-lines file, rotated by size"))
}

// handle registers a for each type pattern, taking one event at a time, in
// the order of arrival.
func handle(p *pluginkit.Plugin, a *Archiver, types []string) {
	for _, t := range types {
		p.Handle(t, a, pluginkit.Concurrency(1))
	}
}
