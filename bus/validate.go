package bus

import (
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// FieldError says which attribute of an event broke which rule. It wraps
// [ErrInvalidEvent].
type FieldError struct {
	Field string // attribute or extension name, e.g. "id" or "traceparent"
	Value string // the offending value, when there is one
	Rule  string // what the value must be
}

// Error quotes the field and value truncated (see [Quote]): they may come
// from an attacker, and an error is echoed in replies and logs.
func (e *FieldError) Error() string {
	field := e.Field
	if len(field) > MaxQuoted || strings.ContainsFunc(field, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		field = Quote(field)
	}
	if e.Value == "" {
		return fmt.Sprintf("%v: %s: %s", ErrInvalidEvent, field, e.Rule)
	}
	return fmt.Sprintf("%v: %s %s: %s", ErrInvalidEvent, field, Quote(e.Value), e.Rule)
}

// MaxQuoted is how many bytes of a value from outside [Quote] keeps.
const MaxQuoted = 64

// Quote quotes s as Go does (%q), keeping at most [MaxQuoted] bytes of it
// and saying how long it was: what errors and log lines echo of input that
// may be hostile, so that a megabyte of it makes a line, not a megabyte.
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// Unwrap returns [ErrInvalidEvent].
func (e *FieldError) Unwrap() error { return ErrInvalidEvent }

// MaxExtensionNameLength is the longest extension name [Validate] accepts,
// the CloudEvents spec's recommended limit.
const MaxExtensionNameLength = 20

var reservedNames = map[string]bool{
	"data": true, "data_base64": true, "specversion": true, "id": true, "source": true,
	"type": true, "time": true, "subject": true, "datacontenttype": true, "dataschema": true,
}

// Validate checks e more strictly than sdk-go's Event.Validate: on top of
// the required attributes it wants specversion 1.0, extension names of
// lower-case letters and digits no longer than [MaxExtensionNameLength]
// characters, and string values without control characters, Unicode
// noncharacters or invalid UTF-8. It returns every problem found, each a
// [*FieldError], joined with errors.Join.
func Validate(e *event.Event) error {
	ctx, ok := e.Context.(*event.EventContextV1)
	if !ok {
		return &FieldError{Field: "specversion", Value: e.SpecVersion(), Rule: "Plugbus accepts CloudEvents 1.0 only"}
	}
	// The checks of sdk-go's EventContextV1.Validate are written out here:
	// it allocates a map and formats the source twice for every event,
	// which showed in the receive path's profile.
	var v validator
	v.str("id", ctx.ID, true)
	v.str("type", ctx.Type, true)
	v.uri("source", &ctx.Source.URL)
	if ctx.Subject != nil {
		v.str("subject", *ctx.Subject, true)
	}
	if ctx.DataContentType != nil {
		if ct := strings.TrimSpace(*ctx.DataContentType); ct == "" {
			v.add("datacontenttype", "", "must be a media type such as application/json (RFC 2046), or absent")
		} else if !isSimpleMediaType(ct) {
			if _, _, err := mime.ParseMediaType(ct); err != nil {
				v.add("datacontenttype", ct, "must be a media type such as application/json (RFC 2046): "+err.Error())
			}
		}
	}
	if ctx.DataSchema != nil && !ctx.DataSchema.Validate() {
		v.add("dataschema", ctx.DataSchema.String(), "must be an absolute URI (RFC 3986)")
	}
	if ctx.Time != nil {
		if rule := timeRule(ctx.Time.Time); rule != "" {
			v.add("time", ctx.Time.Time.String(), rule)
		}
	}
	for name, val := range ctx.Extensions {
		if rule := extensionNameRule(name); rule != "" {
			v.add(name, "", rule)
			continue
		}
		switch x := val.(type) {
		case string:
			v.str(name, x, false)
		case types.Timestamp:
			if rule := timeRule(x.Time); rule != "" {
				v.add(name, x.Time.String(), rule)
			}
		default:
			if _, err := types.Validate(val); err != nil {
				v.add(name, fmt.Sprint(val), err.Error())
			}
		}
	}
	return errors.Join(v.errs...)
}

// validator collects the problems [Validate] finds.
type validator struct{ errs []error }

func (v *validator) add(field, value, rule string) {
	v.errs = append(v.errs, &FieldError{Field: field, Value: value, Rule: rule})
}

// str checks a String attribute; a required one must not be blank.
func (v *validator) str(field, s string, required bool) {
	if required && strings.TrimSpace(s) == "" {
		v.add(field, s, "is required and must not be empty or blank")
		return
	}
	if rule := stringRule(s); rule != "" {
		v.add(field, s, rule)
	}
}

// uri checks a required URI-reference attribute as str checks its string
// form. An opaque URI (scheme:opaque, what parseOpaqueURI reads) is checked
// by its two parts, without building the string: the scheme is ASCII, so no
// character straddles them.
func (v *validator) uri(field string, u *url.URL) {
	if isOpaqueOnly(u) && stringRule(u.Scheme) == "" && stringRule(u.Opaque) == "" {
		return
	}
	v.str(field, u.String(), true)
}

// isOpaqueOnly reports whether u has a scheme and an opaque part and
// nothing else, so that its string form is scheme:opaque.
func isOpaqueOnly(u *url.URL) bool {
	if u.Scheme == "" || u.Opaque == "" {
		return false
	}
	rest := *u
	rest.Scheme, rest.Opaque = "", ""
	return rest == url.URL{}
}

// isSimpleMediaType reports whether ct is type/subtype with no parameters
// and only token characters, which needs no full RFC 2045 parse.
func isSimpleMediaType(ct string) bool {
	slash := strings.IndexByte(ct, '/')
	if slash <= 0 || slash == len(ct)-1 {
		return false
	}
	for i := 0; i < len(ct); i++ {
		c := ct[i]
		if i != slash && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&-^_.+", c) >= 0) {
			return false
		}
	}
	return true
}

func extensionNameRule(name string) string {
	if reservedNames[name] {
		return "extension name is reserved by the CloudEvents spec"
	}
	if name == "" || len(name) > MaxExtensionNameLength {
		return fmt.Sprintf("extension name must be 1 to %d characters", MaxExtensionNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return "extension name must use only lower-case letters a-z and digits 0-9"
		}
	}
	return ""
}

// stringRule returns why s is not a valid CloudEvents String, or "".
// Printable ASCII, what attributes nearly always are, is passed over a
// byte at a time; the rest is read as runes from the first other byte.
func stringRule(s string) string {
	ascii := 0
	for ascii < len(s) && ' ' <= s[ascii] && s[ascii] < 0x7f {
		ascii++
	}
	rest := s[ascii:]
	for i, r := range rest {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(rest[i:]); size <= 1 {
				return "is not valid UTF-8"
			}
		case r < 0x20 || (0x7f <= r && r <= 0x9f):
			return fmt.Sprintf("contains control character U+%04X", r)
		case (0xfdd0 <= r && r <= 0xfdef) || r&0xfffe == 0xfffe:
			return fmt.Sprintf("contains Unicode noncharacter U+%04X", r)
		}
	}
	return ""
}

// timeRule returns why t cannot be sent as an RFC 3339 timestamp, or "":
// Encode writes times in UTC, and RFC 3339 has four-digit years only.
func timeRule(t time.Time) string {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return "must be within years 0000 to 9999 in UTC (RFC 3339)"
	}
	return ""
}
