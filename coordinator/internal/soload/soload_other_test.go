//go:build !(linux && cgo)

package soload_test

import (
	"errors"
	"testing"

	"github.com/plugbus/plugbus/coordinator/internal/soload"
)

// Without cgo (or off Linux) the program builds and says what is missing.
func TestOpenUnavailable(t *testing.T) {
	_, err := soload.Open("greeter.so", "greeter")
	if !errors.Is(err, soload.ErrUnavailable) || soload.Available {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}
