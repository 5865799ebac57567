package identity

import (
	"encoding/json"
	"fmt"
	"strings"
)

// ServerConfig renders rules for the user with nkey publicKey as a
// nats-server configuration authorization block, for a server the
// coordinator does not run (publicKey may be a placeholder).
func (r Rules) ServerConfig(publicKey string) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n    {\n")
	fmt.Fprintf(&b, "      nkey: %s\n", publicKey)
	b.WriteString("      permissions: {\n")
	fmt.Fprintf(&b, "        publish: { allow: %s }\n", list(r.Publish))
	fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", list(r.Subscribe))
	if r.Responses {
		fmt.Fprintf(&b, "        allow_responses: { max: 1, expires: %q }\n", ResponseExpiry.String())
	}
	b.WriteString("      }\n    }\n  ]\n}\n")
	return b.String()
}

// list writes subjects as a configuration array, one a line.
func list(subjects []string) string {
	if len(subjects) == 0 {
		return "[]"
	}
	quoted := make([]string, len(subjects))
	for i, s := range subjects {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return "[\n          " + strings.Join(quoted, ",\n          ") + "\n        ]"
}

// JWTTemplate renders rules for an operator-mode deployment: the nsc
// command that adds the user, and the permissions part ("nats") of its
// user JWT's claims.
func (r Rules) JWTTemplate(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# nsc (operator mode): add the user to the bus's account\nnsc add user --name %s", name)
	for _, s := range r.Publish {
		fmt.Fprintf(&b, " \\\n  --allow-pub %q", s)
	}
	for _, s := range r.Subscribe {
		fmt.Fprintf(&b, " \\\n  --allow-sub %q", s)
	}
	if r.Responses {
		fmt.Fprintf(&b, " \\\n  --allow-pub-response 1 --response-ttl %s", ResponseExpiry)
	}
	b.WriteString("\n\n# the permissions of its user JWT's claims\n")
	claims := map[string]any{"nats": map[string]any{
		"type": "user", "version": 2,
		"pub": map[string]any{"allow": r.Publish},
		"sub": map[string]any{"allow": r.Subscribe},
	}}
	if r.Responses {
		claims["nats"].(map[string]any)["resp"] = map[string]any{"max": 1, "ttl": ResponseExpiry.Nanoseconds()}
	}
	out, _ := json.MarshalIndent(claims, "", "  ")
	b.Write(out)
	b.WriteString("\n")
	return b.String()
}
