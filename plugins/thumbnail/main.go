// Command thumbnail makes PNG thumbnails of uploaded images: it handles
// com.example.image.uploaded events carrying an image or naming an image
// file, and emits com.example.image.thumbnailed. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

const (
	name    = "thumbnail"
	version = "0.1.0"
)

func main() {
	s := newSettings(name)
	out := s.String("out", "PLUGBUS_THUMBNAIL_OUT", "thumbnails", "directory the thumbnails are written to (created if missing)")
	in := s.String("in-dir", "PLUGBUS_THUMBNAIL_IN_DIR", "", `only directory {"path": ...} events may name files in; empty: any absolute path`)
	size := s.Int("size", "PLUGBUS_THUMBNAIL_SIZE", 128, "longest side of a thumbnail, in pixels")
	maxPixels := s.Int64("max-pixels", "PLUGBUS_THUMBNAIL_MAX_PIXELS", 50_000_000, "largest image accepted, in pixels (width×height), checked before decoding")
	concurrency := s.Int("concurrency", "PLUGBUS_THUMBNAIL_CONCURRENCY", runtime.GOMAXPROCS(0), "images processed at once; each may take 4 bytes per pixel of memory")
	instance := s.String("instance", "PLUGBUS_INSTANCE", "", `name of this instance in the "instance" field of emitted events; empty: the NATS micro instance id`)

	err := s.parse(os.Args[1:], flag.CommandLine)
	if errors.Is(err, errHelp) {
		pluginkit.Main(newPlugin(nil, 1)) // prints the help and exits
		return
	}
	if err == nil && *concurrency < 1 {
		err = fmt.Errorf("-concurrency %d: must be at least 1", *concurrency)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	t, err := NewThumbnailer(Config{OutDir: *out, InDir: *in, Size: *size, MaxPixels: *maxPixels, Instance: *instance})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	pluginkit.Main(newPlugin(t, *concurrency))
	_ = t.Close()
}

// newPlugin returns the thumbnail plugin running t. When t has no instance
// name, the events carry the plugin's instance id.
func newPlugin(t *Thumbnailer, concurrency int) *pluginkit.Plugin {
	p := pluginkit.New(name, version,
		pluginkit.WithDescription("makes PNG thumbnails of uploaded images"),
		pluginkit.WithEmits(TypeThumbnailed),
	)
	if t != nil && t.instance() == "" {
		t.instance = p.ID
	}
	p.Handle(TypeUploaded, t, pluginkit.Concurrency(concurrency))
	return p
}
