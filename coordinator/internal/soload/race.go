//go:build race && linux && cgo

package soload

const raceEnabled = true
