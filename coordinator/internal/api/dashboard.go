package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// dashboardFS holds the dashboard: static HTML, CSS and plain JavaScript,
// with no build step.
//
//go:embed dashboard
var dashboardFS embed.FS

// dashboardFiles are the dashboard's files by URL path, read once.
var dashboardFiles = map[string]struct {
	contentType string
	body        []byte
}{
	"/":                  {"text/html; charset=utf-8", mustRead("dashboard/index.html")},
	"/dashboard/app.js":  {"text/javascript; charset=utf-8", mustRead("dashboard/app.js")},
	"/dashboard/app.css": {"text/css; charset=utf-8", mustRead("dashboard/app.css")},
	"/favicon.svg":       {"image/svg+xml", mustRead("dashboard/favicon.svg")},
	// Browsers and tools ask for /favicon.ico whatever the page says;
	// every browser that asks takes an SVG.
	"/favicon.ico": {"image/svg+xml", mustRead("dashboard/favicon.svg")},
}

func mustRead(name string) []byte {
	b, err := fs.ReadFile(dashboardFS, name)
	if err != nil {
		panic("api: embedded " + name + ": " + err.Error()) // a build error, not a runtime one
	}
	return b
}

// dashboardPolicy allows the page its own scripts, styles, images and API
// and nothing else: no inline script, no other origin.
const dashboardPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func (s *server) routeDashboard(mux *http.ServeMux) {
	for path := range dashboardFiles {
		pattern := path
		if path == "/" {
			pattern = "/{$}"
		}
		s.route(mux, "GET", pattern, http.HandlerFunc(handleDashboard))
	}
}

// handleDashboard serves the dashboard's files. The page reads the API with
// fetch and puts what it gets into the DOM as text only.
func handleDashboard(w http.ResponseWriter, r *http.Request) {
	f := dashboardFiles[r.URL.Path]
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", dashboardPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.body)
}
