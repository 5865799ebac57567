package bus

import (
	"errors"
	"fmt"
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

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%v: %s: %s", ErrInvalidEvent, e.Field, e.Rule)
	}
	return fmt.Sprintf("%v: %s %q: %s", ErrInvalidEvent, e.Field, e.Value, e.Rule)
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
	var errs []error
	add := func(field, value, rule string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Rule: rule})
	}
	checkString := func(field, v string, required bool) {
		if required && v == "" {
			add(field, "", "is required and must not be empty")
			return
		}
		if rule := stringRule(v); rule != "" {
			add(field, v, rule)
		}
	}
	checkString("id", ctx.ID, true)
	checkString("type", ctx.Type, true)
	checkString("source", ctx.Source.String(), true)
	if ctx.Subject != nil {
		checkString("subject", *ctx.Subject, true)
	}
	if err := ctx.Validate(); err != nil {
		// sdk-go's own checks (datacontenttype media type, dataschema URI...);
		// report only fields not already reported above.
		var verr event.ValidationError
		if errors.As(err, &verr) {
			for field, ferr := range verr {
				if !hasField(errs, field) {
					add(field, "", ferr.Error())
				}
			}
		} else {
			add("event", "", err.Error())
		}
	}
	if ctx.Time != nil {
		if rule := timeRule(ctx.Time.Time); rule != "" {
			add("time", ctx.Time.Time.String(), rule)
		}
	}
	for name, v := range ctx.Extensions {
		if rule := extensionNameRule(name); rule != "" {
			add(name, "", rule)
			continue
		}
		if s, ok := v.(string); ok {
			if rule := stringRule(s); rule != "" {
				add(name, s, rule)
			}
		} else if ts, ok := v.(types.Timestamp); ok {
			if rule := timeRule(ts.Time); rule != "" {
				add(name, ts.Time.String(), rule)
			}
		} else if _, err := types.Validate(v); err != nil {
			add(name, fmt.Sprint(v), err.Error())
		}
	}
	return errors.Join(errs...)
}

func hasField(errs []error, field string) bool {
	for _, err := range errs {
		if fe, ok := err.(*FieldError); ok && fe.Field == field {
			return true
		}
	}
	return false
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
func stringRule(s string) string {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
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
