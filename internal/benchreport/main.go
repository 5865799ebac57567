// Command benchreport turns go test -bench output into docs/benchmarks.md:
// the median of every metric of every benchmark over its runs (-count N),
// and its ratio to the baselines of its benchmark family from the same run.
//
//	go test -run '^$' -bench . -count 5 ./... > bench.txt
//	go run ./internal/benchreport -cmd 'make bench' -notes notes.md -o docs/benchmarks.md bench.txt
//
// The families, their baselines and the targets are declared in report.go.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	out := flag.String("o", "", "write the report to this file (default standard output)")
	notes := flag.String("notes", "", "Markdown file appended after the tables")
	command := flag.String("cmd", "make bench", "the command the report says produced the figures")
	goVersion := flag.String("go", runtime.Version(), "the Go version the benchmarks ran with")
	chartDir := flag.String("charts", "", "write SVG charts of the main comparisons to this directory and show them in the report")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: benchreport [flags] [go-test-bench-output...]\n\nReads standard input when no file is given.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*out, *notes, *command, *goVersion, *chartDir, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(out, notesFile, command, goVersion, chartDir string, inputs []string) error {
	var readers []io.Reader
	var ran time.Time // when the benchmarks ran: the newest input, or now
	for _, name := range inputs {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.ModTime().After(ran) {
			ran = fi.ModTime()
		}
		readers = append(readers, f)
	}
	if ran.IsZero() {
		ran = time.Now()
	}
	if len(readers) == 0 {
		readers = append(readers, os.Stdin)
	}
	rs, e, err := parse(io.MultiReader(readers...))
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return fmt.Errorf("no benchmark results in the input")
	}
	var notes string
	if notesFile != "" {
		b, err := os.ReadFile(notesFile)
		if err != nil {
			return err
		}
		notes = string(b)
	}
	h := header{
		machine:   machine(e.cpu),
		goVersion: goVersion,
		date:      ran.UTC().Format("2006-01-02 15:04 UTC"),
		command:   command,
		goos:      e.goos,
		goarch:    e.goarch,
	}
	gs := collect(rs)
	var shown []shownChart
	if chartDir != "" {
		if shown, err = writeCharts(chartDir, out, gs); err != nil {
			return err
		}
	}
	w := io.Writer(os.Stdout)
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if err := write(w, h, gs, notes, shown); err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && out != "" {
		return f.Close()
	}
	return nil
}

// writeCharts writes the charts of gs into dir and returns them with their
// paths relative to the report (out), for the report to embed.
func writeCharts(dir, out string, gs []*group) ([]shownChart, error) {
	from := "."
	if out != "" {
		from = filepath.Dir(out)
	}
	var shown []shownChart
	for _, c := range buildCharts(gs) {
		name := filepath.Join(dir, c.file)
		var b strings.Builder
		if err := writeSVG(&b, c); err != nil {
			return nil, err
		}
		if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(from, name)
		if err != nil {
			rel = name
		}
		shown = append(shown, shownChart{title: c.title, path: filepath.ToSlash(rel)})
	}
	return shown, nil
}

// machine describes the machine: the CPU model go test printed with the
// figures (falling back to /proc/cpuinfo's), and this machine's core count
// and memory.
func machine(cpuFromGoTest string) string {
	model, cores := cpuinfo()
	if cpuFromGoTest != "" {
		model = cpuFromGoTest
	}
	if model == "" {
		model = "unknown CPU"
	}
	if cores == 0 {
		cores = runtime.NumCPU()
	}
	s := fmt.Sprintf("%s, %d cores", model, cores)
	if kib := memTotalKiB(); kib > 0 {
		s += fmt.Sprintf(", %.0f GiB memory", float64(kib)/(1<<20))
	}
	return s
}

func cpuinfo() (model string, cores int) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "", 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		case "processor":
			cores++
		}
	}
	return model, cores
}

func memTotalKiB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
