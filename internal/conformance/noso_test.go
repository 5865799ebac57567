//go:build !(linux && cgo && !race)

package conformance_test

import "testing"

// soRow is false: the .so row needs Linux, cgo, and no -race.
const soRow = false

func buildSO(t *testing.T) string {
	t.Skip("the .so row needs Linux and cgo, and is skipped under -race")
	return ""
}
