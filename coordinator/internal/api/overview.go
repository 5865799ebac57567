package api

import (
	"net/http"
	"strconv"
	"time"
)

// What the dashboard reads about plugins, from [Config.Activity]:
//
//	GET /v1/overview                            server-sent events: a snapshot, then an update after every sample
//	GET /v1/plugins/{name}/instances?offset=&limit=   a page of one plugin's instances (default 50, at most 500)
//
// /v1/overview sends
//
//	event: snapshot   activity.Snapshot: every plugin's summary, the counters per type, a minute of rates
//	event: update     activity.Update: what changed at one sample
//
// and a new snapshot when the client fell so far behind that updates were
// lost. Unlike GET /v1/plugins, neither sends every instance, so a
// dashboard watching 10,000 instances receives a few hundred bytes a second
// while nothing changes.
const (
	overviewBuffer       = 16
	defaultInstancesPage = 50
	maxInstancesPage     = 500
)

func (s *server) needActivity(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Activity == nil {
			s.fail(w, r, &apiError{status: http.StatusNotFound, msg: "this coordinator keeps no activity for the dashboard"})
			return
		}
		h(w, r)
	}
}

func (s *server) handleOverview(w http.ResponseWriter, r *http.Request) {
	snap, updates, cancel := s.cfg.Activity.Subscribe(overviewBuffer)
	defer func() { cancel() }()
	s.m.streams.Inc()
	defer s.m.streams.Dec()
	out, err := startSSE(w)
	if err == nil {
		err = out.send("snapshot", snap)
	}
	heartbeat := time.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	for err == nil {
		select {
		case <-r.Context().Done():
			return
		case <-s.cfg.Done:
			return
		case u, ok := <-updates:
			if !ok { // fell behind: start again from a snapshot
				snap, updates, cancel = s.cfg.Activity.Subscribe(overviewBuffer)
				err = out.send("snapshot", snap)
				continue
			}
			err = out.send("update", u)
		case <-heartbeat.C:
			err = out.ping()
		}
	}
}

func (s *server) handleInstances(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	offset, err := intParam(r, "offset", 0, 0, 1<<31-1)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := intParam(r, "limit", defaultInstancesPage, 1, maxInstancesPage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page, ok := s.cfg.Activity.Instances(name, offset, limit)
	if !ok {
		s.fail(w, r, &apiError{status: http.StatusNotFound, msg: "no plugin " + strconv.Quote(name) + " is listed; GET /v1/plugins lists them"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, page)
}

// intParam reads the query parameter name as an integer between lo and hi,
// def when absent.
func intParam(r *http.Request, name string, def, lo, hi int) (int, *apiError) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, &apiError{status: http.StatusBadRequest, field: name,
			msg: name + " " + strconv.Quote(v) + " must be a whole number from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi)}
	}
	return n, nil
}
