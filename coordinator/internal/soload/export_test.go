//go:build linux && cgo

package soload

// Test files of package soload_test build their .so files as this test
// binary was built.
const RaceEnabledForTest = raceEnabled
