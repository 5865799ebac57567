package supervise

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Limits bound what each process of an instance may use. A zero field sets
// no limit.
//
// How they are enforced, said plainly (each start logs it too):
//
//   - Memory: the supervisor reads the process's resident memory (VmRSS in
//     /proc/<pid>/status) every [watchPoll] and kills the process with
//     SIGKILL once it is over the limit; the exit is reported as "over its
//     memory limit", not as a crash. It is not a hard limit: memory taken
//     faster than the poll is over it until the next look. A Go program
//     also gets GOMEMLIMIT at 90% of it (unless its environment sets one),
//     so its garbage collector works to stay below. RLIMIT_AS is no
//     substitute: it limits address space, and a Go program reserves about
//     1.7 GB of it at start however little it uses.
//   - CPUSeconds: the processor time the process may use in all, read from
//     /proc/<pid>/stat every [watchPoll]; over it the process is killed and
//     the exit reported as "over its CPU time limit". It is a total, not a
//     rate: it stops a runaway loop, not a busy plugin's share of the
//     machine. RLIMIT_CPU is no substitute: Go's runtime takes the SIGXCPU
//     it sends, and a Go program then neither stops nor dies.
//   - OpenFiles: RLIMIT_NOFILE (set with prlimit(2) right after the start),
//     the number of file descriptors the process may hold; past it,
//     opening a file or a connection fails with EMFILE ("too many open
//     files") and the process keeps running.
//
// cgroup v2 (memory.max, cpu.max) would make memory a hard limit and CPU a
// rate; this supervisor does not create cgroups yet. Limits apply to the
// process the supervisor starts, not to processes it starts in turn. Off
// Linux none is enforced, and a spec with limits is refused at start.
//
// In configuration (YAML):
//
//	limits:
//	  memory: 256MiB      # resident memory; a number of bytes or with KiB, MiB, GiB, KB, MB, GB
//	  cpu_seconds: 3600   # processor time, in all
//	  open_files: 1024    # file descriptors
type Limits struct {
	Memory     ByteSize `json:"memory,omitempty"`      // bytes of resident memory
	CPUSeconds int64    `json:"cpu_seconds,omitempty"` // seconds of processor time, in all
	OpenFiles  uint64   `json:"open_files,omitempty"`  // file descriptors
}

// ByteSize is a number of bytes, written in configuration as a number or
// with a unit: "512", "64KiB", "256MiB", "2GiB" (KB, MB and GB are powers
// of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// UnmarshalJSON reads a number of bytes or a string with a unit.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var n int64
	if err := json.Unmarshal(data, &n); err == nil {
		*b = ByteSize(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("size must be a number of bytes or a string such as \"256MiB\", got %s", data)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseByteSize reads "256MiB", "2GiB", "64KB" or a plain number of bytes.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, factor = strings.TrimSpace(rest), u.factor
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, such as \"256MiB\", \"2GiB\" or \"500MB\"", s)
	}
	return ByteSize(n * float64(factor)), nil
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

// String describes the limits for the log.
func (l Limits) String() string {
	var parts []string
	if l.Memory > 0 {
		parts = append(parts, "memory "+FormatBytes(int64(l.Memory))+" resident (watched every "+watchPoll.String()+", killed when over)")
	}
	if l.CPUSeconds > 0 {
		parts = append(parts, "CPU time "+strconv.FormatInt(l.CPUSeconds, 10)+"s in all (watched every "+watchPoll.String()+", killed when over)")
	}
	if l.OpenFiles > 0 {
		parts = append(parts, "open files "+strconv.FormatUint(l.OpenFiles, 10)+" (RLIMIT_NOFILE)")
	}
	return strings.Join(parts, ", ")
}

func (l Limits) validate() error {
	if l.Memory < 0 || l.CPUSeconds < 0 {
		return fmt.Errorf("limits: memory %d and cpu_seconds %d must not be negative; 0 sets no limit", l.Memory, l.CPUSeconds)
	}
	if l.Memory > 0 && l.Memory < minMemoryLimit {
		return fmt.Errorf("limits: memory %s is below %s, too little for any plugin to start", FormatBytes(int64(l.Memory)), FormatBytes(minMemoryLimit))
	}
	return nil
}

// minMemoryLimit is the smallest memory limit accepted.
const minMemoryLimit = 4 << 20

// FormatBytes writes n in the largest binary unit that keeps one decimal,
// such as "64.0 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTP"[exp]) + "iB"
}

// watch kills p once its resident memory or processor time is over its
// limit, noting why first; it returns when p has ended.
func (p *process) watch(l Limits, log *slog.Logger) {
	t := time.NewTicker(watchPoll)
	defer t.Stop()
	pid := p.pid
	for {
		select {
		case <-p.ended:
			return
		case <-t.C:
		}
		var over *ExitStatus
		if l.Memory > 0 {
			if rss, err := residentBytes(pid); err == nil && rss > int64(l.Memory) {
				over = &ExitStatus{Limit: "memory", Reason: "over its memory limit: " + FormatBytes(rss) + " resident, limit " + FormatBytes(int64(l.Memory))}
			}
		}
		if l.CPUSeconds > 0 && over == nil {
			if used, err := cpuTime(pid); err == nil && used >= time.Duration(l.CPUSeconds)*time.Second {
				over = &ExitStatus{Limit: "cpu_seconds", Reason: fmt.Sprintf("over its CPU time limit: %v used, limit %ds", used, l.CPUSeconds)}
			}
		}
		if over != nil {
			p.killedFor.Store(over)
			log.Error("killing the plugin: "+over.Reason, "pid", pid, "limit", over.Limit)
			p.kill()
			return
		}
	}
}

// goMemLimit returns GOMEMLIMIT at 90% of the spec's memory limit, so that a
// Go program's garbage collector works to stay under it, unless there is no
// memory limit or the spec's (or every plugin's) environment sets
// GOMEMLIMIT already.
func goMemLimit(sp *Spec, base []string) []string {
	if sp.Limits.Memory <= 0 {
		return nil
	}
	for _, env := range [][]string{base, sp.Env} {
		for _, kv := range env {
			if strings.HasPrefix(kv, "GOMEMLIMIT=") {
				return nil
			}
		}
	}
	return []string{"GOMEMLIMIT=" + strconv.FormatInt(int64(sp.Limits.Memory)/10*9, 10)}
}
