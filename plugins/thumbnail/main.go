// Command thumbnail makes PNG thumbnails of uploaded images: it handles
// com.example.image.uploaded events carrying an image or naming an image
// file, and emits com.example.image.thumbnailed. See README.md.
package main

import (
	"flag"
	"fmt"
	"runtime"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

const (
	name    = "thumbnail"
	version = "0.1.0"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.OutDir, "out", "thumbnails", "directory the thumbnails are written to (created if missing)")
	pluginkit.BindEnv("out", "PLUGBUS_THUMBNAIL_OUT")
	flag.StringVar(&cfg.InDir, "in-dir", "", `only directory {"path": ...} events may name files in; empty: any absolute path`)
	pluginkit.BindEnv("in-dir", "PLUGBUS_THUMBNAIL_IN_DIR")
	flag.IntVar(&cfg.Size, "size", 128, "longest side of a thumbnail, in pixels")
	pluginkit.BindEnv("size", "PLUGBUS_THUMBNAIL_SIZE")
	flag.Int64Var(&cfg.MaxPixels, "max-pixels", 50_000_000, "largest image accepted, in pixels (width×height), checked before decoding")
	pluginkit.BindEnv("max-pixels", "PLUGBUS_THUMBNAIL_MAX_PIXELS")
	concurrency := flag.Int("concurrency", runtime.GOMAXPROCS(0), "images processed at once; each may take 4 bytes per pixel of memory")
	pluginkit.BindEnv("concurrency", "PLUGBUS_THUMBNAIL_CONCURRENCY")
	flag.StringVar(&cfg.Instance, "instance", "", `name of this instance in the "instance" field of emitted events; empty: the NATS micro instance id`)
	pluginkit.BindEnv("instance", "PLUGBUS_INSTANCE")

	var t *Thumbnailer
	pluginkit.MainSetup(newPlugin(), func(p *pluginkit.Plugin) (err error) {
		if *concurrency < 1 {
			return fmt.Errorf("-concurrency %d: must be at least 1", *concurrency)
		}
		if t, err = NewThumbnailer(cfg); err != nil {
			return err
		}
		handle(p, t, *concurrency)
		return nil
	})
	_ = t.Close()
}

func newPlugin() *pluginkit.Plugin {
	return pluginkit.New(name, version,
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
