//go:build !linux

package supervise

import (
	"errors"
	"time"
)

const watchPoll = 100 * time.Millisecond

func applyLimits(pid int, l Limits) error {
	if l.IsZero() {
		return nil
	}
	return errors.New("supervise: resource limits are only enforced on Linux; remove the limits of this plugin")
}

func residentBytes(pid int) (int64, error) {
	return 0, errors.New("supervise: resident memory is only read on Linux")
}

func cpuTime(pid int) (time.Duration, error) {
	return 0, errors.New("supervise: processor time is only read on Linux")
}
