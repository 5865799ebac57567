package bus

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "plugbus"

// EventSubject returns the subject on which producer publishes events of type
// typ: <prefix>.events.<producer>.<typ>.
func EventSubject(prefix, producer, typ string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := ValidateProducer(producer); err != nil {
		return "", err
	}
	if err := ValidateType(typ); err != nil {
		return "", err
	}
	return prefix + ".events." + producer + "." + typ, nil
}

// TypeSubject returns the subject a handler subscribes to for events whose
// type matches pattern, from any producer: <prefix>.events.*.<pattern>.
// The pattern may use the NATS wildcards * and > on whole tokens.
func TypeSubject(prefix, pattern string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := ValidateTypePattern(pattern); err != nil {
		return "", err
	}
	return prefix + ".events.*." + pattern, nil
}

// InboxPrefix is the prefix of the reply subjects of plugin name's
// requests, _INBOX.<name>: plugin-kit connects with it, and in secure mode
// only name may subscribe below it, so no other plugin reads its replies.
func InboxPrefix(name string) string { return "_INBOX." + name }

// InvokeSubject returns the subject on which caller sends a request for the
// capability that answers type typ: <prefix>.invoke.<caller>.<typ>.
func InvokeSubject(prefix, caller, typ string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := ValidateProducer(caller); err != nil {
		return "", err
	}
	if err := ValidateType(typ); err != nil {
		return "", err
	}
	return prefix + ".invoke." + caller + "." + typ, nil
}

// AnswerSubject returns the subject a handler answering the types that match
// pattern subscribes to, for requests from any caller:
// <prefix>.invoke.*.<pattern>.
func AnswerSubject(prefix, pattern string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := ValidateTypePattern(pattern); err != nil {
		return "", err
	}
	return prefix + ".invoke.*." + pattern, nil
}

// AllEventsSubject returns the subject that matches every event under prefix.
func AllEventsSubject(prefix string) string { return prefix + ".events.>" }

// DeadLetterSubject returns the subject of plugin's dead letters.
func DeadLetterSubject(prefix, plugin string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := ValidateProducer(plugin); err != nil {
		return "", err
	}
	return prefix + ".deadletter." + plugin, nil
}

// ParseEventSubject splits an event subject into its producer and type.
func ParseEventSubject(prefix, subject string) (producer, typ string, err error) {
	return parseSubject(prefix, ".events.", "producer", subject)
}

// ParseInvokeSubject splits an invoke subject into its caller and type.
func ParseInvokeSubject(prefix, subject string) (caller, typ string, err error) {
	return parseSubject(prefix, ".invoke.", "caller", subject)
}

// parseSubject splits <prefix><kind><name>.<type> into its name and type.
func parseSubject(prefix, kind, what, subject string) (name, typ string, err error) {
	rest, ok := cutPrefix(subject, prefix, kind)
	if !ok {
		return "", "", fmt.Errorf("%w: subject %s does not start with %q", ErrInvalidSubject, Quote(subject), prefix+kind)
	}

	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return "", "", fmt.Errorf("%w: subject %s has no type after the %s; want %s%s<%s>.<type>", ErrInvalidSubject, Quote(subject), what, prefix, kind, what)
	}
	name, typ = rest[:dot], rest[dot+1:]
	if err := ValidateProducer(name); err != nil {
		return "", "", err
	}
	if err := ValidateType(typ); err != nil {
		return "", "", err
	}
	return name, typ, nil
}

// ValidatePrefix reports whether prefix can start Plugbus subjects: one or
// more dot-separated tokens of letters, digits, '_' and '-'.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: subject prefix is empty; use %q or another name", ErrInvalidSubject, DefaultPrefix)
	}
	for tok := range strings.SplitSeq(prefix, ".") {
		if tok == "" || !isNameToken(tok) {
			return fmt.Errorf("%w: subject prefix %q: each dot-separated part must be non-empty and use only A-Z, a-z, 0-9, '_' and '-'", ErrInvalidSubject, prefix)
		}
	}
	return nil
}

// ValidateProducer reports whether name can be a producer (or plugin) name:
// one NATS token of A-Z, a-z, 0-9, '_' and '-'.
func ValidateProducer(name string) error {
	if name == "" {
		return fmt.Errorf("%w: producer name is empty; use letters, digits, '_' or '-'", ErrInvalidName)
	}
	if !isNameToken(name) {
		return fmt.Errorf("%w: producer name %s: use only A-Z, a-z, 0-9, '_' and '-' (no dots, spaces or wildcards)", ErrInvalidName, Quote(name))
	}
	return nil
}

// ValidateType reports whether typ can route an event: non-empty, no
// whitespace, no '*' or '>', and no empty dot-separated token.
func ValidateType(typ string) error {
	return validateType(typ, false)
}

// ValidateTypePattern is [ValidateType] for subscriptions: a token may also
// be the wildcard '*', and the last token may be '>'.
func ValidateTypePattern(pattern string) error {
	return validateType(pattern, true)
}

func validateType(typ string, wildcards bool) error {
	what := "event type"
	if wildcards {
		what = "event type pattern"
	}
	if typ == "" {
		return typeError("%s is empty", what)
	}
	if !utf8.ValidString(typ) {
		return typeError("%s %s is not valid UTF-8", what, Quote(typ))
	}
	start, wild := 0, false // wild: the part so far holds '*' or '>'
	for i := 0; i <= len(typ); i++ {
		if i < len(typ) && typ[i] != '.' {
			c := typ[i]
			if c <= ' ' || c == 0x7f {
				return typeError("%s %s contains whitespace or a control character at byte %d", what, Quote(typ), i)
			}
			if c >= utf8.RuneSelf && utf8.RuneStart(c) {
				if r, _ := utf8.DecodeRuneInString(typ[i:]); unicode.IsSpace(r) || unicode.IsControl(r) {
					return typeError("%s %s contains whitespace or a control character at byte %d", what, Quote(typ), i)
				}
			}
			if c == '*' || c == '>' {
				if !wildcards {
					return typeError("%s %s contains %q; wildcards are only allowed when subscribing", what, Quote(typ), c)
				}
				wild = true
			}
			continue
		}
		tok := typ[start:i]
		switch {
		case tok == "":
			return typeError("%s %s has an empty dot-separated part", what, Quote(typ))
		case tok == ">" && i != len(typ):
			return typeError("%s %s: '>' may only be the last part", what, Quote(typ))
		case len(tok) > 1 && wild:
			return typeError("%s %s: a wildcard must be a whole dot-separated part", what, Quote(typ))
		}
		start, wild = i+1, false
	}
	return nil
}

// TypeError is an invalid event type or type pattern, from [ValidateType]
// or [ValidateTypePattern]. It wraps [ErrInvalidType].
type TypeError struct {
	// Detail names the value and the rule it breaks, without the
	// "bus: invalid event type" prefix, for messages of other layers.
	Detail string
}

func (e *TypeError) Error() string { return ErrInvalidType.Error() + ": " + e.Detail }

// Unwrap returns [ErrInvalidType].
func (e *TypeError) Unwrap() error { return ErrInvalidType }

func typeError(format string, args ...any) error {
	return &TypeError{Detail: fmt.Sprintf(format, args...)}
}

func isNameToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return len(s) > 0
}

// cutPrefix returns what follows prefix+kind at the start of subject,
// without building the concatenation: this runs for every event received.
func cutPrefix(subject, prefix, kind string) (string, bool) {
	if len(subject) < len(prefix)+len(kind) || subject[:len(prefix)] != prefix || subject[len(prefix):len(prefix)+len(kind)] != kind {
		return "", false
	}
	return subject[len(prefix)+len(kind):], true
}
