package bus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

func TestEventSubject(t *testing.T) {
	tests := []struct {
		name     string
		prefix   string
		producer string
		typ      string
		want     string
		wantErr  error
		mention  string // the value the error must name
	}{
		{name: "design example", prefix: "plugbus", producer: "uploader", typ: "com.example.image.uploaded", want: "plugbus.events.uploader.com.example.image.uploaded"},
		{name: "one-token type", prefix: "plugbus", producer: "p", typ: "ping", want: "plugbus.events.p.ping"},
		{name: "dotted prefix", prefix: "acme.prod", producer: "Up_load-1", typ: "a.b", want: "acme.prod.events.Up_load-1.a.b"},
		{name: "non-ASCII type", prefix: "plugbus", producer: "p", typ: "café.commandé", want: "plugbus.events.p.café.commandé"},

		{name: "empty producer", prefix: "plugbus", producer: "", typ: "t", wantErr: bus.ErrInvalidName, mention: "empty"},
		{name: "producer with a dot", prefix: "plugbus", producer: "a.b", typ: "t", wantErr: bus.ErrInvalidName, mention: `"a.b"`},
		{name: "producer with a space", prefix: "plugbus", producer: "a b", typ: "t", wantErr: bus.ErrInvalidName, mention: `"a b"`},
		{name: "producer is *", prefix: "plugbus", producer: "*", typ: "t", wantErr: bus.ErrInvalidName, mention: `"*"`},
		{name: "producer is >", prefix: "plugbus", producer: ">", typ: "t", wantErr: bus.ErrInvalidName, mention: `">"`},
		{name: "producer with a tab", prefix: "plugbus", producer: "a\tb", typ: "t", wantErr: bus.ErrInvalidName, mention: `"a\tb"`},
		{name: "non-ASCII producer", prefix: "plugbus", producer: "é", typ: "t", wantErr: bus.ErrInvalidName, mention: `"é"`},

		{name: "empty type", prefix: "plugbus", producer: "p", typ: "", wantErr: bus.ErrInvalidType, mention: "empty"},
		{name: "type with a space", prefix: "plugbus", producer: "p", typ: "a b", wantErr: bus.ErrInvalidType, mention: `"a b"`},
		{name: "type with a tab", prefix: "plugbus", producer: "p", typ: "a\tb", wantErr: bus.ErrInvalidType, mention: "whitespace"},
		{name: "type with a newline", prefix: "plugbus", producer: "p", typ: "a\nb", wantErr: bus.ErrInvalidType, mention: "whitespace"},
		{name: "type with a no-break space", prefix: "plugbus", producer: "p", typ: "a\u00a0b", wantErr: bus.ErrInvalidType, mention: "whitespace"},
		{name: "type with invalid UTF-8", prefix: "plugbus", producer: "p", typ: "a\xffb", wantErr: bus.ErrInvalidType, mention: "UTF-8"},
		{name: "type with a stray continuation byte", prefix: "plugbus", producer: "p", typ: "a\x80b", wantErr: bus.ErrInvalidType, mention: "UTF-8"},
		{name: "type with DEL", prefix: "plugbus", producer: "p", typ: "a\x7fb", wantErr: bus.ErrInvalidType, mention: "control"},
		{name: "type is *", prefix: "plugbus", producer: "p", typ: "*", wantErr: bus.ErrInvalidType, mention: "wildcards"},
		{name: "type ends in >", prefix: "plugbus", producer: "p", typ: "com.>", wantErr: bus.ErrInvalidType, mention: `"com.>"`},
		{name: "type with * inside a token", prefix: "plugbus", producer: "p", typ: "a*b", wantErr: bus.ErrInvalidType, mention: `"a*b"`},
		{name: "type with an empty token", prefix: "plugbus", producer: "p", typ: "a..b", wantErr: bus.ErrInvalidType, mention: `"a..b"`},
		{name: "type with a leading dot", prefix: "plugbus", producer: "p", typ: ".a", wantErr: bus.ErrInvalidType, mention: `".a"`},
		{name: "type with a trailing dot", prefix: "plugbus", producer: "p", typ: "a.", wantErr: bus.ErrInvalidType, mention: `"a."`},
		{name: "type is a dot", prefix: "plugbus", producer: "p", typ: ".", wantErr: bus.ErrInvalidType, mention: `"."`},

		{name: "empty prefix", prefix: "", producer: "p", typ: "t", wantErr: bus.ErrInvalidSubject, mention: "prefix"},
		{name: "prefix with an empty token", prefix: "a..b", producer: "p", typ: "t", wantErr: bus.ErrInvalidSubject, mention: `"a..b"`},
		{name: "prefix with a wildcard", prefix: "plugbus.*", producer: "p", typ: "t", wantErr: bus.ErrInvalidSubject, mention: `"plugbus.*"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bus.EventSubject(tt.prefix, tt.producer, tt.typ)
			checkSubjectResult(t, got, err, tt.want, tt.wantErr, tt.mention)
		})
	}
}

func checkSubjectResult(t *testing.T, got string, err error, want string, wantErr error, mention string) {
	t.Helper()
	if wantErr == nil {
		if err != nil {
			t.Fatalf("got error %v, want %q", err, want)
		}
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		return
	}
	if !errors.Is(err, wantErr) {
		t.Fatalf("got %q, %v; want an error wrapping %v", got, err, wantErr)
	}
	if got != "" {
		t.Errorf("got subject %q along with the error, want \"\"", got)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Errorf("got error %q, want it to mention %s", err, mention)
	}
}

func TestTypeSubject(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		want    string
		wantErr error
		mention string
	}{
		{name: "exact type", pattern: "com.example.image.uploaded", want: "plugbus.events.*.com.example.image.uploaded"},
		{name: "trailing >", pattern: "com.example.>", want: "plugbus.events.*.com.example.>"},
		{name: "only >", pattern: ">", want: "plugbus.events.*.>"},
		{name: "* token", pattern: "com.*.uploaded", want: "plugbus.events.*.com.*.uploaded"},
		{name: "only *", pattern: "*", want: "plugbus.events.*.*"},
		{name: "* then >", pattern: "*.>", want: "plugbus.events.*.*.>"},

		{name: "empty", pattern: "", wantErr: bus.ErrInvalidType, mention: "empty"},
		{name: "> not last", pattern: "com.>.x", wantErr: bus.ErrInvalidType, mention: `"com.>.x"`},
		{name: "* inside a token", pattern: "com.ex*", wantErr: bus.ErrInvalidType, mention: `"com.ex*"`},
		{name: "> inside a token", pattern: "com.ex>", wantErr: bus.ErrInvalidType, mention: `"com.ex>"`},
		{name: "space", pattern: "com. x", wantErr: bus.ErrInvalidType, mention: `"com. x"`},
		{name: "empty token", pattern: "com..x", wantErr: bus.ErrInvalidType, mention: `"com..x"`},
		{name: "trailing dot", pattern: "com.", wantErr: bus.ErrInvalidType, mention: `"com."`},
		{name: "leading dot", pattern: ".com", wantErr: bus.ErrInvalidType, mention: `".com"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bus.TypeSubject(bus.DefaultPrefix, tt.pattern)
			checkSubjectResult(t, got, err, tt.want, tt.wantErr, tt.mention)
		})
	}
	t.Run("bad prefix", func(t *testing.T) {
		got, err := bus.TypeSubject("", "t")
		checkSubjectResult(t, got, err, "", bus.ErrInvalidSubject, "prefix")
	})
}

func TestWildcardsOnlyInPatterns(t *testing.T) {
	for _, typ := range []string{"*", ">", "a.*", "a.>", "*.b"} {
		if err := bus.ValidateTypePattern(typ); err != nil {
			t.Errorf("ValidateTypePattern(%q): got %v, want nil", typ, err)
		}
		if err := bus.ValidateType(typ); !errors.Is(err, bus.ErrInvalidType) {
			t.Errorf("ValidateType(%q): got %v, want ErrInvalidType", typ, err)
		}
		if _, err := bus.EventSubject(bus.DefaultPrefix, "p", typ); !errors.Is(err, bus.ErrInvalidType) {
			t.Errorf("EventSubject(type %q): got %v, want ErrInvalidType", typ, err)
		}
	}
}

func TestParseEventSubject(t *testing.T) {
	tests := []struct {
		name         string
		subject      string
		wantProducer string
		wantType     string
		wantErr      error
		mention      string
	}{
		{name: "design example", subject: "plugbus.events.uploader.com.example.image.uploaded", wantProducer: "uploader", wantType: "com.example.image.uploaded"},
		{name: "one-token type", subject: "plugbus.events.p.t", wantProducer: "p", wantType: "t"},

		{name: "other prefix", subject: "other.events.p.t", wantErr: bus.ErrInvalidSubject, mention: `"other.events.p.t"`},
		{name: "dead letter subject", subject: "plugbus.deadletter.p", wantErr: bus.ErrInvalidSubject, mention: `"plugbus.deadletter.p"`},
		{name: "prefix only", subject: "plugbus.events.", wantErr: bus.ErrInvalidSubject, mention: "no type"},
		{name: "no type", subject: "plugbus.events.p", wantErr: bus.ErrInvalidSubject, mention: "no type"},
		{name: "empty producer", subject: "plugbus.events..t", wantErr: bus.ErrInvalidName, mention: "empty"},
		{name: "empty type", subject: "plugbus.events.p.", wantErr: bus.ErrInvalidType, mention: "empty"},
		{name: "wildcard producer", subject: "plugbus.events.*.t", wantErr: bus.ErrInvalidName, mention: `"*"`},
		{name: "wildcard type", subject: "plugbus.events.p.com.>", wantErr: bus.ErrInvalidType, mention: `"com.>"`},
		{name: "empty type token", subject: "plugbus.events.p.a..b", wantErr: bus.ErrInvalidType, mention: `"a..b"`},
		{name: "prefix that only shares a start", subject: "plugbusx.events.p.t", wantErr: bus.ErrInvalidSubject, mention: `"plugbusx.events.p.t"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			producer, typ, err := bus.ParseEventSubject(bus.DefaultPrefix, tt.subject)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("got error %v, want producer %q type %q", err, tt.wantProducer, tt.wantType)
				}
				if producer != tt.wantProducer || typ != tt.wantType {
					t.Errorf("got producer %q type %q, want %q %q", producer, typ, tt.wantProducer, tt.wantType)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %q %q %v, want an error wrapping %v", producer, typ, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("got error %q, want it to mention %s", err, tt.mention)
			}
		})
	}
}

func TestParseEventSubjectInvertsEventSubject(t *testing.T) {
	for _, c := range []struct{ prefix, producer, typ string }{
		{"plugbus", "uploader", "com.example.image.uploaded"},
		{"a.b.c", "x-y_z", "t"},
		{"plugbus", "events", "events.events"},
	} {
		subject, err := bus.EventSubject(c.prefix, c.producer, c.typ)
		if err != nil {
			t.Fatalf("EventSubject(%q, %q, %q): %v", c.prefix, c.producer, c.typ, err)
		}
		producer, typ, err := bus.ParseEventSubject(c.prefix, subject)
		if err != nil || producer != c.producer || typ != c.typ {
			t.Errorf("ParseEventSubject(%q): got %q %q %v, want %q %q nil", subject, producer, typ, err, c.producer, c.typ)
		}
	}
}

func TestInvokeSubject(t *testing.T) {
	got, err := bus.InvokeSubject(bus.DefaultPrefix, "cli", "com.example.greet.requested")
	if err != nil || got != "plugbus.invoke.cli.com.example.greet.requested" {
		t.Errorf("InvokeSubject: got %q, %v; want plugbus.invoke.cli.com.example.greet.requested", got, err)
	}
	for _, c := range []struct {
		caller, typ string
		want        error
	}{
		{"a.b", "t", bus.ErrInvalidName},
		{"", "t", bus.ErrInvalidName},
		{"cli", "com.example.*", bus.ErrInvalidType},
		{"cli", "", bus.ErrInvalidType},
	} {
		if _, err := bus.InvokeSubject(bus.DefaultPrefix, c.caller, c.typ); !errors.Is(err, c.want) {
			t.Errorf("InvokeSubject(%q, %q): got %v, want %v", c.caller, c.typ, err, c.want)
		}
	}
	if got, err := bus.AnswerSubject(bus.DefaultPrefix, "com.example.>"); err != nil || got != "plugbus.invoke.*.com.example.>" {
		t.Errorf("AnswerSubject: got %q, %v; want plugbus.invoke.*.com.example.>", got, err)
	}
	if _, err := bus.AnswerSubject(bus.DefaultPrefix, "com.>.x"); !errors.Is(err, bus.ErrInvalidType) {
		t.Errorf("AnswerSubject(com.>.x): got %v, want ErrInvalidType", err)
	}
}

func TestParseInvokeSubject(t *testing.T) {
	for _, c := range []struct{ prefix, caller, typ string }{
		{"plugbus", "cli", "com.example.greet.requested"},
		{"a.b", "x-y_z", "invoke.invoke"},
	} {
		subject, err := bus.InvokeSubject(c.prefix, c.caller, c.typ)
		if err != nil {
			t.Fatal(err)
		}
		caller, typ, err := bus.ParseInvokeSubject(c.prefix, subject)
		if err != nil || caller != c.caller || typ != c.typ {
			t.Errorf("ParseInvokeSubject(%q): got %q %q %v, want %q %q nil", subject, caller, typ, err, c.caller, c.typ)
		}
	}
	for _, subject := range []string{"plugbus.events.cli.t", "plugbus.invoke.cli", "plugbus.invoke.*.t"} {
		if _, _, err := bus.ParseInvokeSubject(bus.DefaultPrefix, subject); err == nil || !strings.Contains(err.Error(), subject) && !strings.Contains(err.Error(), `"*"`) {
			t.Errorf("ParseInvokeSubject(%q): got %v, want an error naming the subject or the bad caller", subject, err)
		}
	}
}

func TestDeadLetterSubject(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		plugin  string
		want    string
		wantErr error
		mention string
	}{
		{name: "ok", prefix: "plugbus", plugin: "resizer", want: "plugbus.deadletter.resizer"},
		{name: "dotted prefix", prefix: "a.b", plugin: "p-1", want: "a.b.deadletter.p-1"},
		{name: "empty plugin", prefix: "plugbus", plugin: "", wantErr: bus.ErrInvalidName, mention: "empty"},
		{name: "plugin with a dot", prefix: "plugbus", plugin: "a.b", wantErr: bus.ErrInvalidName, mention: `"a.b"`},
		{name: "plugin is >", prefix: "plugbus", plugin: ">", wantErr: bus.ErrInvalidName, mention: `">"`},
		{name: "empty prefix", prefix: "", plugin: "p", wantErr: bus.ErrInvalidSubject, mention: "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bus.DeadLetterSubject(tt.prefix, tt.plugin)
			checkSubjectResult(t, got, err, tt.want, tt.wantErr, tt.mention)
		})
	}
}

func TestAllEventsSubject(t *testing.T) {
	if got, want := bus.AllEventsSubject("plugbus"), "plugbus.events.>"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSubjectsRouteOnARealServer(t *testing.T) {
	// What EventSubject builds is matched by what TypeSubject builds, as
	// the server sees it.
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	tests := []struct {
		pattern string
		typ     string
		match   bool
	}{
		{"com.example.image.uploaded", "com.example.image.uploaded", true},
		{"com.example.>", "com.example.image.uploaded", true},
		{"com.*.image.uploaded", "com.example.image.uploaded", true},
		{"com.example.*", "com.example.image.uploaded", false},
		{"com.example.image", "com.example.image.uploaded", false},
	}
	for _, tt := range tests {
		subj, err := bus.TypeSubject(bus.DefaultPrefix, tt.pattern)
		if err != nil {
			t.Fatalf("TypeSubject(%q): %v", tt.pattern, err)
		}
		sub, err := nc.SubscribeSync(subj)
		if err != nil {
			t.Fatalf("SubscribeSync(%q): %v", subj, err)
		}
		pubSubj, err := bus.EventSubject(bus.DefaultPrefix, "uploader", tt.typ)
		if err != nil {
			t.Fatalf("EventSubject: %v", err)
		}
		if err := nc.Publish(pubSubj, nil); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		n, _, _ := sub.Pending()
		if got := n == 1; got != tt.match {
			t.Errorf("subscription %q, publish %q: got match %v, want %v", subj, pubSubj, got, tt.match)
		}
		sub.Unsubscribe()
	}
}
