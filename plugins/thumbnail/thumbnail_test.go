package thumbnail

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// testImage is a w×h image: red on the left half, blue on the right, so
// that a scaled copy can be checked for more than its size.
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{R: 255, A: 255}
			if x >= w/2 {
				c = color.RGBA{B: 255, A: 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func encode(t *testing.T, format string, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&b, img)
	case "jpeg":
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 95})
	case "gif":
		// Exact colours, no dithering.
		pal := image.NewPaletted(img.Bounds(), color.Palette{color.RGBA{R: 255, A: 255}, color.RGBA{B: 255, A: 255}})
		draw.Draw(pal, pal.Bounds(), img, img.Bounds().Min, draw.Src)
		err = gif.Encode(&b, pal, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// start runs the thumbnail plugin on a kittest harness.
func start(t *testing.T, cfg Config) (*kittest.Harness, *Thumbnailer) {
	t.Helper()
	if cfg.OutDir == "" {
		cfg.OutDir = t.TempDir()
	}
	if cfg.Size == 0 {
		cfg.Size = 128
	}
	if cfg.MaxPixels == 0 {
		cfg.MaxPixels = 50_000_000
	}
	th, err := NewThumbnailer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { th.Close() })
	p := newPlugin()
	handle(p, th, 4)
	return kittest.Start(t, p), th
}

func imageEvent(contentType string, data []byte) *pluginkit.Event {
	e := pluginkit.NewEvent(TypeUploaded, nil)
	e.SetData(contentType, data)
	return e
}

// thumbnail reads the emitted event's data and the PNG file it names.
func thumbnail(t *testing.T, out *pluginkit.Event) (Thumbnail, image.Image) {
	t.Helper()
	if out.Type() != TypeThumbnailed {
		t.Fatalf("got a %s event, want %s", out.Type(), TypeThumbnailed)
	}
	var th Thumbnail
	if err := json.Unmarshal(out.Data(), &th); err != nil {
		t.Fatalf("data %s: %v", out.Data(), err)
	}
	f, err := os.Open(th.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, format, err := image.Decode(f)
	if err != nil {
		t.Fatalf("thumbnail %s: %v", th.Path, err)
	}
	if format != "png" {
		t.Errorf("thumbnail is %s, want png", format)
	}
	return th, img
}

func TestImageBytes(t *testing.T) {
	dir := t.TempDir()
	h, _ := start(t, Config{OutDir: dir, Instance: "box-1"})
	tests := []struct {
		format, contentType string
		w, h                int
		wantW, wantH        int
	}{
		{"png", "image/png", 300, 150, 128, 64},
		{"jpeg", "image/jpeg", 200, 400, 64, 128},
		{"gif", "image/gif", 256, 256, 128, 128},
		{"png", "image/png; charset=binary", 40, 20, 40, 20}, // small enough already
		{"png", "application/octet-stream", 1000, 3, 128, 1},
		{"jpeg", "", 129, 128, 128, 127},
	}
	for _, tt := range tests {
		t.Run(tt.format+" "+tt.contentType, func(t *testing.T) {
			in := imageEvent(tt.contentType, encode(t, tt.format, testImage(tt.w, tt.h)))
			if err := h.Publish(in); err != nil {
				t.Fatal(err)
			}
			out, err := h.Next(TypeThumbnailed)
			if err != nil {
				t.Fatal(err)
			}
			th, img := thumbnail(t, out)
			want := Thumbnail{Path: th.Path, Width: tt.wantW, Height: tt.wantH, SourceWidth: tt.w, SourceHeight: tt.h, SourceID: in.ID(), Instance: "box-1"}
			if th != want {
				t.Errorf("event data %+v, want %+v", th, want)
			}
			if b := img.Bounds(); b.Dx() != tt.wantW || b.Dy() != tt.wantH {
				t.Errorf("thumbnail is %dx%d, want %dx%d", b.Dx(), b.Dy(), tt.wantW, tt.wantH)
			}
			if filepath.Dir(th.Path) != dir {
				t.Errorf("thumbnail %s is not in the output directory %s", th.Path, dir)
			}
			if out.Extensions()["causeid"] != in.ID() {
				t.Errorf("causeid %v, want %s", out.Extensions()["causeid"], in.ID())
			}
			// The picture is scaled, not just resized: left red, right blue.
			if tt.wantW >= 8 {
				l := color.RGBAModel.Convert(img.At(1, tt.wantH/2)).(color.RGBA)
				r := color.RGBAModel.Convert(img.At(tt.wantW-2, tt.wantH/2)).(color.RGBA)
				if l.R < 200 || l.B > 60 || r.B < 200 || r.R > 60 {
					t.Errorf("thumbnail colours left %v right %v; want red then blue", l, r)
				}
			}
		})
	}
}

func TestPathInput(t *testing.T) {
	inDir, outDir := t.TempDir(), t.TempDir()
	src := filepath.Join(inDir, "holiday photo.png")
	if err := os.WriteFile(src, encode(t, "png", testImage(200, 150)), 0o644); err != nil {
		t.Fatal(err)
	}
	h, _ := start(t, Config{OutDir: outDir, Size: 100})
	in := pluginkit.NewEvent(TypeUploaded, map[string]string{"path": src})
	reply, err := h.Request(in)
	if err != nil {
		t.Fatal(err)
	}
	th, img := thumbnail(t, reply)
	if th.Width != 100 || th.Height != 75 || th.SourceWidth != 200 || th.SourceHeight != 150 || th.SourcePath != src || th.SourceID != in.ID() {
		t.Errorf("event data %+v: want 100x75 from 200x150 %s", th, src)
	}
	if b := img.Bounds(); b.Dx() != 100 || b.Dy() != 75 {
		t.Errorf("thumbnail is %dx%d, want 100x75", b.Dx(), b.Dy())
	}
	if base := filepath.Base(th.Path); !strings.HasPrefix(base, "holiday_photo-") || filepath.Dir(th.Path) != outDir {
		t.Errorf("thumbnail at %s: want %s/holiday_photo-<hash>.png", th.Path, outDir)
	}
	// Without an instance name, the plugin's instance id is used.
	if th.Instance == "" {
		t.Error("no instance in the event")
	}
	// Handling the same event again overwrites its thumbnail instead of
	// adding one.
	if _, err := h.Request(in); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Errorf("output directory holds %d files after the same event twice, want 1", len(entries))
	}
}

// Bad input is a permanent error: a request gets code 422, and nothing is
// written.
func TestBadInputIs422(t *testing.T) {
	inDir, outDir := t.TempDir(), t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside.png")
	pngBytes := encode(t, "png", testImage(20, 20))
	for _, f := range []string{outside, filepath.Join(inDir, "ok.png")} {
		if err := os.WriteFile(f, pngBytes, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(inDir, "link.png")); err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), pngBytes[:len(pngBytes)/2]...)
	h, _ := start(t, Config{OutDir: outDir, InDir: inDir, MaxPixels: 20 * 20})
	pathEvent := func(p string) *pluginkit.Event {
		return pluginkit.NewEvent(TypeUploaded, map[string]string{"path": p})
	}
	tests := []struct {
		name string
		in   *pluginkit.Event
		want string // in the error description
	}{
		{"not an image", imageEvent("image/png", []byte("hello, I am text")), "not a PNG"},
		{"truncated png", imageEvent("image/png", corrupt), "decode png"},
		{"too many pixels", imageEvent("image/png", encode(t, "png", testImage(21, 20))), "over the limit"},
		{"no data", imageEvent("image/png", nil), "no data"},
		{"unsupported type", imageEvent("text/plain", []byte("x")), "datacontenttype"},
		{"bad json", imageEvent("application/json", []byte("{")), "JSON"},
		{"no path", pluginkit.NewEvent(TypeUploaded, map[string]string{"file": "/x.png"}), `no "path"`},
		{"relative path", pathEvent("ok.png"), "absolute"},
		{"missing file", pathEvent(filepath.Join(inDir, "missing.png")), "no such file"},
		{"outside in-dir", pathEvent(outside), "outside the input directory"},
		{"dot-dot out of in-dir", pathEvent(inDir + "/../" + filepath.Base(filepath.Dir(outside)) + "/outside.png"), "outside the input directory"},
		{"symlink out of in-dir", pathEvent(filepath.Join(inDir, "link.png")), "escapes"},
		{"directory", pathEvent(inDir), "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := h.Request(tt.in)
			var se *pluginkit.AnswerError
			if !errors.As(err, &se) {
				t.Fatalf("reply %v, error %v; want a *pluginkit.AnswerError", reply, err)
			}
			if se.Code != pluginkit.CodePermanent || !strings.Contains(se.Description, tt.want) {
				t.Errorf("error %s %q; want code %s mentioning %q", se.Code, se.Description, pluginkit.CodePermanent, tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
		t.Errorf("bad input left %d files in the output directory", len(entries))
	}
	// And a good file in the input directory does work.
	if _, err := h.Request(pathEvent(filepath.Join(inDir, "ok.png"))); err != nil {
		t.Errorf("file inside -in-dir: %v", err)
	}
}

// An image whose header claims a huge size is refused from the header,
// before anything is allocated for its pixels.
func TestDecompressionBomb(t *testing.T) {
	b := encode(t, "png", testImage(1, 1))
	// IHDR: length (4), "IHDR" (4), width (4), height (4), ... after the
	// 8-byte signature; its CRC covers type and data.
	binary.BigEndian.PutUint32(b[16:], 100_000)
	binary.BigEndian.PutUint32(b[20:], 100_000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	h, _ := start(t, Config{})
	_, err := h.Request(imageEvent("image/png", b))
	var se *pluginkit.AnswerError
	if !errors.As(err, &se) || se.Code != pluginkit.CodePermanent || !strings.Contains(se.Description, "100000x100000") {
		t.Fatalf("got %v; want a 422 error naming the 100000x100000 size", err)
	}
}

// A crafted event id cannot place the thumbnail outside the output
// directory.
func TestEventIDCannotEscape(t *testing.T) {
	root := t.TempDir()
	outDir := filepath.Join(root, "out")
	h, _ := start(t, Config{OutDir: outDir})
	for _, id := range []string{"../escaped", "../../etc/passwd", "/abs/path", "..", ".hidden", "a/../../b"} {
		in := imageEvent("image/png", encode(t, "png", testImage(10, 10)))
		in.SetID(id)
		reply, err := h.Request(in)
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		th, _ := thumbnail(t, reply)
		if filepath.Dir(th.Path) != outDir || strings.HasPrefix(filepath.Base(th.Path), ".") {
			t.Errorf("id %q: thumbnail at %s, want a visible file directly in %s", id, th.Path, outDir)
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "out" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files next to the output directory: %v", names)
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 6 {
		t.Errorf("output directory holds %d files, want 6 (one per id)", len(entries))
	}
}

func TestOutputName(t *testing.T) {
	tests := []struct{ stem, wantPrefix string }{
		{"photo", "photo-"},
		{"holiday photo.v2", "holiday_photo.v2-"},
		{"../../etc/passwd", "etc_passwd-"},
		{"..", "image-"},
		{".hidden", "hidden-"},
		{"", "image-"},
		{"été", "t__-"},
		{strings.Repeat("a", 100), strings.Repeat("a", 64) + "-"},
	}
	for _, tt := range tests {
		got := outputName(tt.stem, "src", "id")
		if !strings.HasPrefix(got, tt.wantPrefix) || !strings.HasSuffix(got, ".png") || strings.ContainsAny(got, `/\`) {
			t.Errorf("outputName(%q) = %q, want %q<hash>.png", tt.stem, got, tt.wantPrefix)
		}
	}
	if outputName("x", "s", "1") == outputName("x", "s", "2") || outputName("x", "a", "1") == outputName("x", "b", "1") {
		t.Error("different events get the same name")
	}
}

func TestNewThumbnailerErrors(t *testing.T) {
	for _, cfg := range []Config{
		{OutDir: t.TempDir(), Size: 0, MaxPixels: 1},
		{OutDir: t.TempDir(), Size: 1, MaxPixels: 0},
		{OutDir: "", Size: 1, MaxPixels: 1},
		{OutDir: t.TempDir(), InDir: filepath.Join(t.TempDir(), "missing"), Size: 1, MaxPixels: 1},
	} {
		if th, err := NewThumbnailer(cfg); err == nil {
			th.Close()
			t.Errorf("NewThumbnailer(%+v) succeeded; want an error", cfg)
		}
	}
}
