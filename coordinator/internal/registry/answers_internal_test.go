package registry

import "testing"

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"com.example.greet.requested", "com.example.greet.requested", true},
		{"com.example.greet.requested", "com.example.greet.sent", false},
		{"com.example.>", "com.example.greet.requested", true},
		{"com.example.>", "com.example", false},
		{"com.*.greet.requested", "com.example.*.requested", true},
		{"com.*", "com.example.greet", false},
		{"com.*.x", "org.>", false},
		{">", "a", true},
		{"a.b", "a.b.c", false},
	} {
		if got := overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("overlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := overlap(tc.b, tc.a); got != tc.want {
			t.Errorf("overlap(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}
