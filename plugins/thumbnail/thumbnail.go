package thumbnail

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // registered for image.Decode
	_ "image/jpeg"
	"image/png"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/image/draw"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Event types of the thumbnail plugin.
const (
	// TypeUploaded is the event it handles: an image, as the data itself
	// or as a JSON object naming a file.
	TypeUploaded = "com.example.image.uploaded"
	// TypeThumbnailed is the event it emits; its data is a [Thumbnail].
	TypeThumbnailed = "com.example.image.thumbnailed"
)

// Thumbnail is the data of a [TypeThumbnailed] event.
type Thumbnail struct {
	Path         string `json:"path"` // absolute path of the PNG thumbnail
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	SourceWidth  int    `json:"source_width"`
	SourceHeight int    `json:"source_height"`
	SourceID     string `json:"source_id"`             // id of the uploaded event
	SourcePath   string `json:"source_path,omitempty"` // the file named by the uploaded event, if any
	Instance     string `json:"instance"`              // the plugin instance that made the thumbnail
}

// pathRequest is the JSON form of an uploaded event's data.
type pathRequest struct {
	Path string `json:"path"`
}

// A Thumbnailer makes PNG thumbnails of uploaded images.
//
// An uploaded event's data is either the image itself (datacontenttype
// image/png, image/jpeg or image/gif; application/octet-stream or none is
// sniffed) or JSON {"path": "/abs/file.png"} (application/json) naming a
// file the plugin can read. The thumbnail keeps the aspect ratio, has at
// most Size pixels on its longest side (smaller images keep their size),
// and is written into the output directory atomically (a temporary file
// renamed), named after the input file's name or the event id plus a hash
// of the event's source and id: a redelivered event overwrites its own
// thumbnail, two events never share one.
//
// Bad input (not an image, a format it does not decode, more than
// MaxPixels pixels, a path it may not read) is a [pluginkit.Permanent]
// error: a request gets error code 422.
type Thumbnailer struct {
	out      *os.Root
	outDir   string // absolute
	in       *os.Root
	inDir    string // absolute; "" allows any absolute path
	size     int
	maxPix   int64
	instance func() string
}

var _ pluginkit.Handler = (*Thumbnailer)(nil)

// Config configures a [Thumbnailer].
type Config struct {
	// OutDir receives the thumbnails; it is created if missing.
	OutDir string
	// InDir, when set, is the only directory JSON paths may name files
	// in (symbolic links leading out of it are refused too). Empty allows
	// any absolute path the process can read.
	InDir string
	// Size is the longest side of a thumbnail in pixels.
	Size int
	// MaxPixels bounds width×height of the images decoded, checked from
	// the image header before decoding, against decompression bombs.
	MaxPixels int64
	// Instance names this instance in the emitted events.
	Instance string
}

// NewThumbnailer checks cfg and opens its directories.
func NewThumbnailer(cfg Config) (*Thumbnailer, error) {
	if cfg.Size < 1 {
		return nil, fmt.Errorf("thumbnail: size %d: must be at least 1", cfg.Size)
	}
	if cfg.MaxPixels < 1 {
		return nil, fmt.Errorf("thumbnail: max pixels %d: must be at least 1", cfg.MaxPixels)
	}
	if cfg.OutDir == "" {
		return nil, errors.New("thumbnail: no output directory")
	}
	outDir, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return nil, fmt.Errorf("thumbnail: output directory: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("thumbnail: output directory: %w", err)
	}
	t := &Thumbnailer{outDir: outDir, size: cfg.Size, maxPix: cfg.MaxPixels}
	if t.out, err = os.OpenRoot(outDir); err != nil {
		return nil, fmt.Errorf("thumbnail: output directory: %w", err)
	}
	if cfg.InDir != "" {
		if t.inDir, err = filepath.Abs(cfg.InDir); err != nil {
			t.out.Close()
			return nil, fmt.Errorf("thumbnail: input directory: %w", err)
		}
		if t.in, err = os.OpenRoot(t.inDir); err != nil {
			t.out.Close()
			return nil, fmt.Errorf("thumbnail: input directory: %w", err)
		}
	}
	instance := cfg.Instance
	t.instance = func() string { return instance }
	return t, nil
}

// Close closes the directories.
func (t *Thumbnailer) Close() error {
	err := t.out.Close()
	if t.in != nil {
		err = errors.Join(err, t.in.Close())
	}
	return err
}

// HandleEvent makes the thumbnail of the uploaded image e and returns the
// [TypeThumbnailed] event describing it.
func (t *Thumbnailer) HandleEvent(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
	src, stem, srcPath, err := t.source(e)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	img, cfg, err := t.decode(src)
	if err != nil {
		if srcPath != "" {
			err = fmt.Errorf("%s: %w", srcPath, err)
		}
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	thumb := scale(img, t.size)
	name := outputName(stem, e.Source(), e.ID())
	if err := t.write(name, thumb); err != nil {
		return nil, err
	}
	b := thumb.Bounds()
	return pluginkit.NewEvent(TypeThumbnailed, Thumbnail{
		Path:         filepath.Join(t.outDir, name),
		Width:        b.Dx(),
		Height:       b.Dy(),
		SourceWidth:  cfg.Width,
		SourceHeight: cfg.Height,
		SourceID:     e.ID(),
		SourcePath:   srcPath,
		Instance:     t.instance(),
	}), nil
}

// source opens the image an uploaded event carries or names. It returns the
// image's bytes, the stem of the thumbnail's name, and the file's path when
// the event named one.
func (t *Thumbnailer) source(e pluginkit.Event) (io.ReadSeekCloser, string, string, error) {
	ct := e.DataContentType()
	mt := ""
	if ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, "", "", pluginkit.Permanent(fmt.Errorf("datacontenttype %q: %v", ct, err))
		}
	}
	switch {
	case mt == "image/png", mt == "image/jpeg", mt == "image/gif", mt == "application/octet-stream", mt == "":
		if len(e.Data()) == 0 {
			return nil, "", "", pluginkit.Permanent(errors.New("the event has no data: want the image, or JSON {\"path\": ...}"))
		}
		return nopCloser{bytes.NewReader(e.Data())}, e.ID(), "", nil
	case mt == "application/json", mt == "text/json", strings.HasSuffix(mt, "+json"):
		var req pathRequest
		if err := json.Unmarshal(e.Data(), &req); err != nil {
			return nil, "", "", pluginkit.Permanent(fmt.Errorf("data is not JSON {\"path\": ...}: %v", err))
		}
		f, err := t.open(req.Path)
		if err != nil {
			return nil, "", "", err
		}
		base := filepath.Base(req.Path)
		return f, strings.TrimSuffix(base, filepath.Ext(base)), req.Path, nil
	default:
		return nil, "", "", pluginkit.Permanent(fmt.Errorf("datacontenttype %q: want image/png, image/jpeg, image/gif, or application/json with {\"path\": ...}", ct))
	}
}

// open opens the file at path, an absolute path inside the input directory
// when there is one.
func (t *Thumbnailer) open(path string) (*os.File, error) {
	if path == "" {
		return nil, pluginkit.Permanent(errors.New(`JSON data has no "path"`))
	}
	if !filepath.IsAbs(path) {
		return nil, pluginkit.Permanent(fmt.Errorf("path %q: must be absolute", path))
	}
	var f *os.File
	var err error
	if t.in == nil {
		f, err = os.Open(path)
	} else {
		rel, rerr := filepath.Rel(t.inDir, filepath.Clean(path))
		if rerr != nil || !filepath.IsLocal(rel) {
			return nil, pluginkit.Permanent(fmt.Errorf("path %q: outside the input directory %s", path, t.inDir))
		}
		f, err = t.in.Open(rel)
	}
	if err != nil {
		if transient(err) {
			return nil, err
		}
		return nil, pluginkit.Permanent(err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, pluginkit.Permanent(fmt.Errorf("path %q: not a regular file", path))
	}
	return f, nil
}

// transient reports whether an error opening a file may go away by itself.
func transient(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.EIO) ||
		errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM)
}

// decode reads the image header, refuses images over the pixel limit
// before decoding anything else, then decodes the image.
func (t *Thumbnailer) decode(r io.ReadSeeker) (image.Image, image.Config, error) {
	cfg, format, err := image.DecodeConfig(bufio.NewReader(r))
	if err != nil {
		return nil, cfg, pluginkit.Permanent(fmt.Errorf("not a PNG, JPEG or GIF image: %v", err))
	}
	if cfg.Width < 1 || cfg.Height < 1 {
		return nil, cfg, pluginkit.Permanent(fmt.Errorf("%s image of %dx%d pixels: nothing to scale", format, cfg.Width, cfg.Height))
	}
	if pix := int64(cfg.Width) * int64(cfg.Height); pix > t.maxPix {
		return nil, cfg, pluginkit.Permanent(fmt.Errorf("%s image of %dx%d = %d pixels: over the limit of %d (-max-pixels)", format, cfg.Width, cfg.Height, pix, t.maxPix))
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, cfg, err
	}
	img, _, err := image.Decode(bufio.NewReader(r))
	if err != nil {
		return nil, cfg, pluginkit.Permanent(fmt.Errorf("decode %s image: %v", format, err))
	}
	return img, cfg, nil
}

// scale returns img scaled to at most size pixels on its longest side,
// keeping its aspect ratio; an image that fits already keeps its size.
func scale(img image.Image, size int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w > size || h > size {
		if w >= h {
			tw, th = size, max(1, int((int64(h)*int64(size)+int64(w)/2)/int64(w)))
		} else {
			tw, th = max(1, int((int64(w)*int64(size)+int64(h)/2)/int64(h))), size
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	if tw == w && th == h {
		draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Src)
	} else {
		draw.CatmullRom.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	}
	return dst
}

// write encodes img as PNG into the output directory under name, through a
// temporary file, so that readers never see a partial thumbnail. The
// output directory is an os.Root: nothing can be written outside it.
func (t *Thumbnailer) write(name string, img image.Image) error {
	tmp := ".tmp-" + pluginkit.NewID() + ".png"
	f, err := t.out.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("thumbnail: %w", err)
	}
	w := bufio.NewWriter(f)
	err = png.Encode(w, img)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = t.out.Rename(tmp, name)
	}
	if err != nil {
		_ = t.out.Remove(tmp)
		return fmt.Errorf("thumbnail: write %s: %w", name, err)
	}
	return nil
}

// outputName is the thumbnail's file name: the stem reduced to letters,
// digits, '.', '_' and '-' (no separators, no leading dot, at most 64
// bytes), a hash of the event's source and id, and ".png".
func outputName(stem, source, id string) string {
	b := make([]byte, 0, len(stem))
	for i := 0; i < len(stem) && len(b) < 64; i++ {
		c := stem[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
			b = append(b, c)
		case c == '.' && len(b) > 0:
			b = append(b, c)
		default:
			b = append(b, '_')
		}
	}
	s := strings.TrimLeft(string(b), "._") // no hidden files
	if s == "" {
		s = "image"
	}
	sum := sha256.Sum256([]byte(source + "\x00" + id))
	return s + "-" + hex.EncodeToString(sum[:6]) + ".png"
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }
