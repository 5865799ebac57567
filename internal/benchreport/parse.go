package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// A result is one line of go test -bench output: one run of one benchmark.
type result struct {
	pkg     string             // import path from the preceding "pkg:" line
	name    string             // without "Benchmark" and without the -GOMAXPROCS suffix
	iters   int64              // b.N
	metrics map[string]float64 // unit -> value: "ns/op", "B/op", "events/s"...
}

// family is the benchmark function's name without "Benchmark": "OneWay".
func (r result) family() string {
	f, _, _ := strings.Cut(r.name, "/")
	return f
}

// sub is the sub-benchmark path below the family: "128B/raw", or "" for a
// benchmark without sub-benchmarks.
func (r result) sub() string {
	_, s, _ := strings.Cut(r.name, "/")
	return s
}

// env is what go test prints about the machine before the results.
type env struct {
	goos, goarch, cpu string
}

var procsSuffix = regexp.MustCompile(`-(\d+)$`)

// parse reads go test -bench output, any number of packages and runs
// (-count N), and returns every result line in order. Lines that are not
// results (PASS, ok, logs, "BenchmarkX" alone while a benchmark runs) are
// skipped. A result whose name line a log interrupted (something the
// benchmark ran wrote to standard error mid-line, as go-plugin's yamux
// does) is read from the name and the figures on the next line. The -N suffix go test adds for GOMAXPROCS is removed when every
// result of a package ends in the same one, so that a sub-benchmark named
// "c-1" with GOMAXPROCS 1 keeps its name.
func parse(r io.Reader) ([]result, env, error) {
	var (
		out     []result
		e       env
		pkg     string
		pending string // a benchmark's name whose figures have not come yet
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, "Benchmark") {
			switch k {
			case "pkg":
				pkg = v
			case "goos":
				e.goos = v
			case "goarch":
				e.goarch = v
			case "cpu":
				e.cpu = v
			}
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			if pending != "" {
				if res, ok, err := parseLine(pending + " " + line); ok && err == nil {
					res.pkg = pkg
					out = append(out, res)
					pending = ""
				}
			}
			continue
		}
		res, ok, err := parseLine(line)
		if err != nil {
			return nil, e, fmt.Errorf("line %d: %w", lineNo, err)
		}
		pending = ""
		if ok {
			res.pkg = pkg
			out = append(out, res)
		} else {
			pending = strings.Fields(line)[0]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, e, err
	}
	trimProcs(out)
	return out, e, nil
}

// parseLine reads "BenchmarkName-2  1000  123 ns/op  4.5 events/s ...".
// ok is false for a line that is only a name (or a name and a log).
func parseLine(line string) (res result, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return res, false, nil
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return res, false, nil // "BenchmarkX  some log text": not a result
	}
	res = result{name: strings.TrimPrefix(f[0], "Benchmark"), iters: n, metrics: map[string]float64{}}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return res, false, fmt.Errorf("%s: metric %q: value %q is not a number", f[0], f[i+1], f[i])
		}
		res.metrics[f[i+1]] = v
	}
	return res, true, nil
}

// trimProcs removes the -GOMAXPROCS suffix from names, per package, when all
// of the package's results carry the same one.
func trimProcs(rs []result) {
	suffix := map[string]string{} // pkg -> common suffix, "" when none
	seen := map[string]bool{}
	for _, r := range rs {
		m := procsSuffix.FindString(r.name)
		if !seen[r.pkg] {
			seen[r.pkg], suffix[r.pkg] = true, m
		} else if suffix[r.pkg] != m {
			suffix[r.pkg] = ""
		}
	}
	for i := range rs {
		if s := suffix[rs[i].pkg]; s != "" {
			rs[i].name = strings.TrimSuffix(rs[i].name, s)
		}
	}
}
