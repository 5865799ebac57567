package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/plugbus/plugbus/coordinator/internal/agent"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
)

// Agents and plugins managed at runtime ([Config.Fleet] set; the orders
// live in the bus's key-value store, so any coordinator serves them):
//
//	GET    /v1/agents                     the agents running now and their instances
//	GET    /v1/run                        the plugins started at runtime
//	POST   /v1/run                        run one: {"name","exec","args","env","replicas","agent","dir","sha256","handles","answers","emits"}
//	POST   /v1/run/{name}/scale?replicas=N
//	POST   /v1/run/{name}/restart
//	DELETE /v1/run/{name}                 stop it
//	GET    /v1/run/{name}/logs?n=100      its last log lines, oldest first

// runRequest is the body of POST /v1/run.
type runRequest struct {
	Name     string   `json:"name"`
	Exec     string   `json:"exec"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Replicas int      `json:"replicas"`
	Agent    string   `json:"agent"`
	Dir      string   `json:"dir"`
	SHA256   string   `json:"sha256"`
	// Handles, Answers and Emits declare the plugin's types: in secure
	// mode, its permissions.
	Handles []string `json:"handles"`
	Answers []string `json:"answers"`
	Emits   []string `json:"emits"`
}

func (s *server) routeFleet(mux *http.ServeMux) {
	s.routeMethods(mux, "/v1/agents", s.needFleet, map[string]http.HandlerFunc{http.MethodGet: s.handleAgents})
	s.routeMethods(mux, "/v1/run", s.needFleet, map[string]http.HandlerFunc{http.MethodGet: s.handleOrders, http.MethodPost: s.handleRun})
	s.routeMethods(mux, "/v1/run/{name}", s.needFleet, map[string]http.HandlerFunc{http.MethodDelete: s.handleStopRun})
	s.routeMethods(mux, "/v1/run/{name}/scale", s.needFleet, map[string]http.HandlerFunc{http.MethodPost: s.handleScale})
	s.routeMethods(mux, "/v1/run/{name}/restart", s.needFleet, map[string]http.HandlerFunc{http.MethodPost: s.handleRestart})
	s.routeMethods(mux, "/v1/run/{name}/logs", s.needFleet, map[string]http.HandlerFunc{http.MethodGet: s.handleRunLogs})
}

// needFleet answers 404 when the bus has no key-value store to keep
// orders in.
func (s *server) needFleet(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Fleet == nil {
			s.fail(w, r, &apiError{status: http.StatusNotFound, msg: "agents and runtime plugins need JetStream on the NATS server (the orders are kept in its key-value store)"})
			return
		}
		h(w, r)
	}
}

// fleetError answers an error of the store: 404 for an unknown plugin, 409
// for no agent to run on, 400 for a bad order, 503 otherwise.
func (s *server) fleetError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, agent.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, agent.ErrNoAgent), errors.Is(err, agent.ErrUnknownAgent):
		status = http.StatusConflict
	case errors.Is(err, supervise.ErrInvalidConfig), errors.Is(err, agent.ErrInvalid):
		status = http.StatusBadRequest
	}
	s.fail(w, r, &apiError{status: status, msg: err.Error()})
}

func (s *server) handleAgents(w http.ResponseWriter, r *http.Request) {
	agents, err := s.cfg.Fleet.Agents(r.Context())
	if err != nil {
		s.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(agents))
}

func (s *server) handleOrders(w http.ResponseWriter, r *http.Request) {
	orders, err := s.cfg.Fleet.List(r.Context())
	if err != nil {
		s.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(orders))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *server) handleRun(w http.ResponseWriter, r *http.Request) {
	var req runRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("body: %v; want {\"name\": \"...\", \"exec\": \"/path/on/the/agent\", \"args\": [...], \"replicas\": 1, \"agent\": \"...\"}", err)})
		return
	}
	spec := agent.Spec{Agent: req.Agent}
	spec.Name, spec.Exec, spec.Args, spec.Env = req.Name, req.Exec, req.Args, req.Env
	spec.Replicas, spec.Dir, spec.SHA256 = req.Replicas, req.Dir, req.SHA256
	spec.Handles, spec.Answers, spec.Emits = req.Handles, req.Answers, req.Emits
	spec, err := s.cfg.Fleet.Run(r.Context(), spec)
	if err != nil {
		s.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, spec)
}

func (s *server) handleStopRun(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Fleet.Stop(r.Context(), r.PathValue("name")); err != nil {
		s.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"stopping": r.PathValue("name")})
}

func (s *server) handleScale(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("replicas"))
	if err != nil {
		s.fail(w, r, &apiError{status: http.StatusBadRequest, field: "replicas", msg: fmt.Sprintf("?replicas=%q: want the number of instances, such as ?replicas=3", r.URL.Query().Get("replicas"))})
		return
	}
	spec, err := s.cfg.Fleet.Scale(r.Context(), r.PathValue("name"), n)
	if err != nil {
		s.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, spec)
}

func (s *server) handleRestart(w http.ResponseWriter, r *http.Request) {
	spec, err := s.cfg.Fleet.Restart(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, spec)
}

func (s *server) handleRunLogs(w http.ResponseWriter, r *http.Request) {
	n := 100
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			s.fail(w, r, &apiError{status: http.StatusBadRequest, field: "n", msg: fmt.Sprintf("?n=%q: want a number of lines (0 for all)", v)})
			return
		}
	}
	lines := []json.RawMessage{}
	ctx := r.Context()
	err := s.cfg.Fleet.Logs(ctx, r.PathValue("name"), n, false, func(line []byte) {
		if json.Valid(line) {
			lines = append(lines, append(json.RawMessage(nil), line...))
		}
	})
	if err != nil {
		s.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, lines)
}
