package api

import (
	"embed"
	"net/http"
)

// dashboardFS holds the dashboard: one static page with its CSS and plain
// JavaScript inline, so there is no build step.
//
//go:embed dashboard/index.html
var dashboardFS embed.FS

var dashboardPage = mustRead(dashboardFS, "dashboard/index.html")

func mustRead(fs embed.FS, name string) []byte {
	b, err := fs.ReadFile(name)
	if err != nil {
		panic("api: embedded " + name + ": " + err.Error()) // a build error, not a runtime one
	}
	return b
}

// handleDashboard is GET /. The page reads the API with fetch and puts what
// it gets into the DOM as text only; the policy below forbids any other
// origin.
func handleDashboard(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(dashboardPage)
}
