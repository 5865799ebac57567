//go:build !race

package pluginkit_test

// raceEnabled says the tests run with -race, so plugin binaries they build
// are built with it too.
const raceEnabled = false
