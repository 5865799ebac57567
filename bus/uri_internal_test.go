package bus

import (
	"net/url"
	"reflect"
	"testing"
)

// FuzzParseURI checks that parseURI, with its shortcut for opaque URIs,
// reads every string as url.Parse does, and that the validator's check of
// an opaque URI by parts agrees with its check of the whole string.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"urn:plugbus:hello", "urn:", "URN:x", "u:", "a+b.c-d:x", "1a:x", ":x", "urn",
		"urn:a?b", "urn:a#b", "urn:/a", "urn://h/p", "http://example.com/a", "urn:a\x00b",
		"urn:a\x7fb", "urn:%zz", "urn:a b", "urn:é", "mailto:a@b", "urn:a\ufdd0", "urn:\xff",
		"a_b:x", "urn:a?", "urn:a\n", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, wantErr := url.Parse(s)
		got, err := parseURI(s)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("parseURI(%q): error %v, url.Parse: %v", s, err, wantErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, *want) {
			t.Fatalf("parseURI(%q) = %#v, url.Parse: %#v", s, got, *want)
		}
		var byParts, whole validator
		byParts.uri("source", &got)
		whole.str("source", want.String(), true)
		if (len(byParts.errs) == 0) != (len(whole.errs) == 0) {
			t.Fatalf("%q: checked by parts %v, as a whole %v", s, byParts.errs, whole.errs)
		}
	})
}
