// Package thumbnail is a plugin that makes PNG thumbnails of uploaded
// images: it handles com.example.image.uploaded events carrying an image or
// naming an image file, and emits com.example.image.thumbnailed. See
// README.md; its program is in cmd/thumbnail.
package thumbnail

import (
	"fmt"
	"runtime"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The plugin's name and version.
const (
	Name    = "thumbnail"
	Version = "0.1.0"
)

func init() { pluginkit.Register(Name, New) }

// New returns the thumbnail plugin with its settings (see README.md)
// defined on its flag set, each bound to an environment variable. When it
// starts, it builds the [Thumbnailer] they configure.
func New() *pluginkit.Plugin {
	p := newPlugin()
	fs := p.Flags()
	var cfg Config
	fs.StringVar(&cfg.OutDir, "out", "thumbnails", "directory the thumbnails are written to (created if missing)")
	p.BindEnv("out", "PLUGBUS_THUMBNAIL_OUT")
	fs.StringVar(&cfg.InDir, "in-dir", "", `only directory {"path": ...} events may name files in; empty: any absolute path`)
	p.BindEnv("in-dir", "PLUGBUS_THUMBNAIL_IN_DIR")
	fs.IntVar(&cfg.Size, "size", 128, "longest side of a thumbnail, in pixels")
	p.BindEnv("size", "PLUGBUS_THUMBNAIL_SIZE")
	fs.Int64Var(&cfg.MaxPixels, "max-pixels", 50_000_000, "largest image accepted, in pixels (width×height), checked before decoding")
	p.BindEnv("max-pixels", "PLUGBUS_THUMBNAIL_MAX_PIXELS")
	concurrency := fs.Int("concurrency", runtime.GOMAXPROCS(0), "images processed at once; each may take 4 bytes per pixel of memory")
	p.BindEnv("concurrency", "PLUGBUS_THUMBNAIL_CONCURRENCY")
	fs.StringVar(&cfg.Instance, "instance", "", `name of this instance in the "instance" field of emitted events; empty: the NATS micro instance id`)
	p.BindEnv("instance", "PLUGBUS_INSTANCE")

	p.Setup(func(p *pluginkit.Plugin) error {
		if *concurrency < 1 {
			return fmt.Errorf("-concurrency %d: must be at least 1", *concurrency)
		}
		t, err := NewThumbnailer(cfg)
		if err != nil {
			return err
		}
		p.Cleanup(t.Close)
		handle(p, t, *concurrency)
		return nil
	})
	return p
}

func newPlugin() *pluginkit.Plugin {
	return pluginkit.New(Name, Version,
		pluginkit.WithDescription("makes PNG thumbnails of uploaded images"),
		pluginkit.WithEmits(TypeThumbnailed),
	)
}

// handle registers t on p. When t has no instance name, the events carry
// the plugin's instance id.
func handle(p *pluginkit.Plugin, t *Thumbnailer, concurrency int) {
	if t.instance() == "" {
		t.instance = p.ID
	}
	p.Handle(TypeUploaded, t, pluginkit.Concurrency(concurrency))
}
