package agent_test

import (
	"testing"

	"github.com/plugbus/plugbus/coordinator/internal/agent"
)

// The coordinator learns who asks from the request's subject: a subject
// an agent may publish to names that agent and one kind of request, and
// nothing else parses as one.
func TestParseRequest(t *testing.T) {
	for _, prefix := range []string{"plugbus", "acme.bus"} {
		subject := agent.RequestSubject(prefix, "host1", agent.RequestIdentity)
		name, kind, ok := agent.ParseRequest(prefix, subject)
		if !ok || name != "host1" || kind != agent.RequestIdentity {
			t.Errorf("%s: got %q %q %v", subject, name, kind, ok)
		}
	}
	for _, subject := range []string{
		"plugbus.agent.host1",               // no kind
		"plugbus.agent..orders",             // no name
		"plugbus.agent.host1.orders.extra",  // more tokens
		"plugbus.events.agent.host1.orders", // not a request
		"other.agent.host1.orders",          // another prefix
		"plugbus.agentx.host1.orders",       // not the agent subjects
	} {
		if name, kind, ok := agent.ParseRequest("plugbus", subject); ok {
			t.Errorf("%s parsed as agent %q asking %q", subject, name, kind)
		}
	}
	if got := agent.InboxPrefix("host1"); got != "_INBOX.agent.host1" {
		t.Errorf("inbox prefix %s", got)
	}
}
