// Command archive appends every event of configured types to a JSON-lines
// file, one CloudEvent in JSON format per line, rotating the file by size.
// See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

const (
	name    = "archive"
	version = "0.1.0"
)

func main() {
	s := newSettings(name)
	types := newListFlag(">")
	s.Var(types, "types", "PLUGBUS_ARCHIVE_TYPES", "event type patterns to archive, comma-separated; NATS wildcards * and > allowed")
	dir := s.String("dir", "PLUGBUS_ARCHIVE_DIR", "archive", "directory of archive.jsonl and the rotated files (created if missing)")
	maxBytes := s.Int64("max-bytes", "PLUGBUS_ARCHIVE_MAX_BYTES", 100<<20, "size at which archive.jsonl is rotated; 0: never")
	fsync := s.Bool("fsync", "PLUGBUS_ARCHIVE_FSYNC", false, "sync every event to disk before acknowledging it (survives power loss; slower)")

	err := s.parse(os.Args[1:], flag.CommandLine)
	if errors.Is(err, errHelp) {
		p, _ := newPlugin(nil, []string{">"})
		pluginkit.Main(p) // prints the help and exits
		return
	}
	if err == nil && len(types.values) == 0 {
		err = errors.New("-types: no event type pattern")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	a, err := Open(*dir, *maxBytes, *fsync)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	p, err := newPlugin(a, types.values)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	// Main returns after a clean stop, once every handler has returned:
	// then nothing more can be written, and Close syncs the file.
	pluginkit.Main(p)
	if err := a.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// newPlugin returns the archive plugin writing events of types to a. Each
// type pattern gets a handler that takes one event at a time, in the order
// of arrival.
func newPlugin(a *Archiver, types []string) (*pluginkit.Plugin, error) {
	p := pluginkit.New(name, version, pluginkit.WithDescription("appends events to a JSON-lines file, rotated by size"))
	for _, t := range types {
		if err := handle(p, t, a, pluginkit.Concurrency(1)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// handle is p.Handle returning an error instead of panicking on a bad
// pattern, which here comes from configuration, not from the program.
func handle(p *pluginkit.Plugin, pattern string, h pluginkit.Handler, opts ...pluginkit.HandleOption) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("-types: %v", v)
		}
	}()
	p.Handle(pattern, h, opts...)
	return nil
}
