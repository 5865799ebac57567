package identity

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
)

// Scope is what the permissions of an identity refer to: the subject
// prefix and the names of the durable streams.
type Scope struct {
	// Prefix is the subject prefix; default bus.DefaultPrefix.
	Prefix string
	// Stream is the events stream; default bus.DefaultEventsStream.
	Stream string
	// DedupBucket is the effectively-once key-value bucket; default
	// bus.DefaultDedupBucket.
	DedupBucket string
}

func (s Scope) withDefaults() Scope {
	if s.Prefix == "" {
		s.Prefix = bus.DefaultPrefix
	}
	if s.Stream == "" {
		s.Stream = bus.DefaultEventsStream
	}
	if s.DedupBucket == "" {
		s.DedupBucket = bus.DefaultDedupBucket
	}
	return s
}

// ResponseExpiry bounds how long after a request a plugin may answer it.
const ResponseExpiry = 10 * time.Minute

// Rules are the subjects an identity may publish to and subscribe to, in
// the form nats-server's configuration takes them: a subscribe entry
// "subject queue" allows only that queue group on subject.
type Rules struct {
	Publish   []string
	Subscribe []string
	// Responses allows one reply to each request the identity received,
	// within ResponseExpiry (nats-server's allow_responses).
	Responses bool
}

// PluginRules are the least privileges of plugin id:
//
// Publish: its events, on P.events.NAME.<each type it emits> (P.events.NAME.>
// when it declares none) and its lifecycle events; its requests, on
// P.invoke.NAME.>; its dead letters; one reply to each request it got; and
// of JetStream only what reading its own consumer takes (info, fetch, acks)
// and its own effectively-once records.
//
// Subscribe: the events of the types it handles, on P.events.*.<type> (in
// queue group NAME, or none); the requests of the types it answers, on
// P.invoke.*.<type>, in queue group NAME only; its own inboxes
// (_INBOX.NAME.>); and the micro discovery subjects addressed to NAME, and
// $SRV.PING and $SRV.INFO addressed to all services (so `nats micro ls`
// lists it), but not $SRV.STATS to all (see the registry's Config.Names).
//
// Nothing else: no other producer's subjects, no $SYS, no stream or
// consumer management, no other plugin's consumer or records.
func PluginRules(scope Scope, id Identity) Rules {
	s := scope.withDefaults()
	p, n := s.Prefix, id.Name
	var r Rules
	r.Responses = true
	if len(id.Emits) == 0 {
		r.Publish = append(r.Publish, p+".events."+n+".>")
	} else {
		for _, t := range id.Emits {
			r.Publish = append(r.Publish, p+".events."+n+"."+t)
		}
		r.Publish = append(r.Publish, p+".events."+n+".io.plugbus.plugin.>")
	}
	kvStream := "KV_" + s.DedupBucket
	r.Publish = append(r.Publish,
		p+".invoke."+n+".>",
		p+".deadletter."+n,
		"$JS.API.CONSUMER.INFO."+s.Stream+"."+n,
		"$JS.API.CONSUMER.MSG.NEXT."+s.Stream+"."+n,
		"$JS.ACK."+s.Stream+"."+n+".>",
		"$JS.API.STREAM.INFO."+kvStream,
		"$JS.API.DIRECT.GET."+kvStream+".$KV."+s.DedupBucket+"."+n+".>",
		"$KV."+s.DedupBucket+"."+n+".>",
	)
	for _, t := range id.Handles {
		r.Subscribe = append(r.Subscribe, p+".events.*."+t, p+".events.*."+t+" "+n)
	}
	for _, t := range id.Answers {
		r.Subscribe = append(r.Subscribe, p+".invoke.*."+t+" "+n)
	}
	r.Subscribe = append(r.Subscribe,
		bus.InboxPrefix(n)+".>",
		// Not $SRV.STATS, the request to every service: an answer says
		// nothing of who sent it, so in secure mode the registry asks each
		// plugin's STATS by name, which only its own identity may hear.
		"$SRV.PING", "$SRV.INFO",
		"$SRV.*."+n, "$SRV.*."+n+".*",
	)
	return r
}

// Permissions turns rules into nats-server's permissions.
func (r Rules) Permissions() *server.Permissions {
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: r.Publish},
		Subscribe: &server.SubjectPermission{Allow: r.Subscribe},
	}
	if r.Responses {
		p.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: ResponseExpiry}
	}
	return p
}

// CoordinatorRules are the coordinator's own privileges: everything under
// the prefix (it publishes its own and the HTTP API's events, invokes,
// replays dead letters), the JetStream API (it creates the streams and the
// plugins' consumers), micro discovery, its inboxes, and one reply to
// each request it gets (the agents' among them); nothing of $SYS.
func CoordinatorRules(scope Scope) Rules {
	p := scope.withDefaults().Prefix
	return Rules{
		Publish:   []string{p + ".>", "$JS.>", "$KV.>", "$SRV.>"},
		Subscribe: []string{p + ".>", "_INBOX.>", "$SRV.>"},
		Responses: true,
	}
}

// HTTPRules are the privileges of the HTTP API's publisher: events and
// requests as producer (the API's producer name), and replies on its own
// inboxes (_INBOX.<producer>.>), which also carry the events stream's
// acknowledgements in durable mode. It may not subscribe to any event,
// answer any request, touch JetStream's API or read $SYS.
func HTTPRules(scope Scope, producer string) Rules {
	p := scope.withDefaults().Prefix
	return Rules{
		Publish:   []string{p + ".events." + producer + ".>", p + ".invoke." + producer + ".>"},
		Subscribe: []string{bus.InboxPrefix(producer) + ".>"},
	}
}

// CLIProducer is the producer name of the events the command line
// publishes.
const CLIProducer = "cli"

// CLIRules are the privileges of the command line's identity (the
// store's cli.nk), for `coordinator publish` and `coordinator tail`: it
// publishes events as producer "cli" (checking first whether the events
// stream exists, to wait for it to store them), reads every event as it
// passes, and reads its own inboxes. It may not publish as anyone else,
// send or answer requests, manage streams or consumers, or read $SYS.
func CLIRules(scope Scope) Rules {
	s := scope.withDefaults()
	p := s.Prefix
	return Rules{
		Publish: []string{
			p + ".events." + CLIProducer + ".>",
			"$JS.API.STREAM.INFO." + s.Stream,
		},
		Subscribe: []string{p + ".events.>", bus.InboxPrefix(CLIProducer) + ".>"},
	}
}

// AgentRules are the privileges of the agent called name (see package
// agent), holding the identities of plugins:
//
// Publish: its requests to the coordinator, on P.agent.NAME.* (its
// orders, and an identity for each plugin it starts); its own entry in
// the agents' bucket ($KV.PLUGBUS_AGENTS.NAME); the log lines of the
// plugins it holds identities of (P.logs.<plugin>); crash-loop events as
// its own producer, agent-NAME (agent.Producer), which no plugin may be
// called; and of JetStream only the info of the buckets and the log
// stream it opens.
//
// Subscribe: its own inboxes (_INBOX.agent.NAME.>), nothing else.
//
// It may not read events, publish as any plugin, send or answer requests,
// read or write orders (the coordinator answers the orders that name it),
// create consumers (a consumer's delivery subject is not checked against
// its creator's permissions), or manage streams.
func AgentRules(scope Scope, name string, plugins []string) Rules {
	p := scope.withDefaults().Prefix
	r := Rules{
		Publish: []string{
			agent.RequestSubjects(p, name),
			p + ".events." + agent.Producer(name) + "." + bus.TypePluginCrashlooping,
			"$KV." + agent.AgentsBucket + "." + name,
			"$JS.API.STREAM.INFO.KV_" + agent.AgentsBucket,
			"$JS.API.STREAM.INFO.KV_" + agent.SpecsBucket,
			"$JS.API.STREAM.INFO." + agent.LogsStream,
		},
		Subscribe: []string{agent.InboxPrefix(name) + ".>"},
	}
	for _, plugin := range plugins {
		r.Publish = append(r.Publish, p+".logs."+plugin)
	}
	return r
}
