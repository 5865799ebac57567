package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/plugbus/plugbus/coordinator/internal/identity"
)

// Identity endpoints, served in secure mode ([Config.Identities] set) and
// only to a client with the HTTP token (none configured: 403):
//
//	GET    /v1/identities                         list the plugin identities
//	POST   /v1/identities                         add one: {"name","handles","answers","emits"}; 201 with its seed
//	DELETE /v1/identities/{name}                  remove one; its connections are closed at once
//	POST   /v1/identities/{name}/rotate           new key; 200 with its seed; the old key's connections are closed
//	GET    /v1/identities/{name}/permissions      what it may publish and subscribe to
//	GET    /v1/agent-identities                   list the agents' identities
//	POST   /v1/agent-identities                   add one: {"name"}; 201 with its seed
//	DELETE /v1/agent-identities/{name}            remove one, and the identities of the plugins it runs; their connections are closed at once
//	POST   /v1/agent-identities/{name}/rotate     new key; 200 with its seed; the old key's connections are closed
//
// The seed in an answer is the only copy for a plugin run elsewhere: the
// coordinator keeps its public key.

// Identities administers secure mode's identities for the HTTP API.
type Identities interface {
	List() any
	Add(ctx context.Context, name string, handles, answers, emits []string) (any, error)
	Remove(ctx context.Context, name string) error
	Rotate(ctx context.Context, name string) (any, error)
	Permissions(name string) (any, error)
	// Agents' identities (coordinator agents add).
	AgentList() any
	AgentAdd(ctx context.Context, name string) (any, error)
	AgentRemove(ctx context.Context, name string) error
	AgentRotate(ctx context.Context, name string) (any, error)
}

// identityRequest is the body of POST /v1/identities.
type identityRequest struct {
	Name    string   `json:"name"`
	Handles []string `json:"handles"`
	Answers []string `json:"answers"`
	Emits   []string `json:"emits"`
}

func (s *server) routeIdentities(mux *http.ServeMux) {
	s.routeMethods(mux, "/v1/identities", s.needIdentities, map[string]http.HandlerFunc{
		http.MethodGet: s.handleIdentityList, http.MethodPost: s.handleIdentityAdd,
	})
	s.routeMethods(mux, "/v1/identities/{name}", s.needIdentities, map[string]http.HandlerFunc{http.MethodDelete: s.handleIdentityRemove})
	s.routeMethods(mux, "/v1/identities/{name}/rotate", s.needIdentities, map[string]http.HandlerFunc{http.MethodPost: s.handleIdentityRotate})
	s.routeMethods(mux, "/v1/identities/{name}/permissions", s.needIdentities, map[string]http.HandlerFunc{http.MethodGet: s.handleIdentityPermissions})
	s.routeMethods(mux, "/v1/agent-identities", s.needIdentities, map[string]http.HandlerFunc{
		http.MethodGet: s.handleAgentIdentityList, http.MethodPost: s.handleAgentIdentityAdd,
	})
	s.routeMethods(mux, "/v1/agent-identities/{name}", s.needIdentities, map[string]http.HandlerFunc{http.MethodDelete: s.handleAgentIdentityRemove})
	s.routeMethods(mux, "/v1/agent-identities/{name}/rotate", s.needIdentities, map[string]http.HandlerFunc{http.MethodPost: s.handleAgentIdentityRotate})
}

// needIdentities answers 404 when secure mode is off, and 403 when the API
// has no token: anyone who reaches it could otherwise take over a plugin's
// identity.
func (s *server) needIdentities(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.cfg.Identities == nil:
			s.fail(w, r, &apiError{status: http.StatusNotFound, msg: "secure mode is off: no identities (start the coordinator with --secure)"})
		case !s.hasToken:
			s.fail(w, r, &apiError{status: http.StatusForbidden, msg: "identities can be administered only with the HTTP token: start the coordinator with --http-token (PLUGBUS_HTTP_TOKEN)"})
		default:
			h(w, r)
		}
	}
}

func (s *server) handleIdentityList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Identities.List())
}

func (s *server) handleIdentityAdd(w http.ResponseWriter, r *http.Request) {
	var req identityRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("body: %v; want {\"name\": \"...\", \"handles\": [...], \"answers\": [...], \"emits\": [...]}", err)})
		return
	}
	v, err := s.cfg.Identities.Add(r.Context(), req.Name, req.Handles, req.Answers, req.Emits)
	if err != nil {
		s.fail(w, r, identityError(err))
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (s *server) handleIdentityRemove(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Identities.Remove(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, r, identityError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleIdentityRotate(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Identities.Rotate(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, identityError(err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) handleIdentityPermissions(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Identities.Permissions(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, identityError(err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) handleAgentIdentityList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Identities.AgentList())
}

func (s *server) handleAgentIdentityAdd(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("body: %v; want {\"name\": \"...\"}", err)})
		return
	}
	v, err := s.cfg.Identities.AgentAdd(r.Context(), req.Name)
	if err != nil {
		s.fail(w, r, identityError(err))
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (s *server) handleAgentIdentityRemove(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Identities.AgentRemove(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, r, identityError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleAgentIdentityRotate(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Identities.AgentRotate(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, identityError(err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func identityError(err error) *apiError {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, identity.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, identity.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, identity.ErrExists):
		status = http.StatusConflict
	}
	return &apiError{status: status, msg: err.Error()}
}
