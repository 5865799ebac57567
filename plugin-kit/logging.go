package pluginkit

import "log/slog"

// durationsAsText logs durations as "10s" in JSON too, where slog writes
// nanoseconds (and the coordinator, reading a supervised plugin's log as
// JSON numbers, showed 1e+10).
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
