package gateway

import "testing"

// TestClientStreams: only procedures whose client sends a stream get the
// long read deadline.
func TestClientStreams(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]bool{
		"/shopbus.telemetry.v1.TelemetryService/IngestReadings": true,
		"/shopbus.telemetry.v1.TelemetryService/IngestBatch":    false,
		"/shopbus.order.v1.OrderService/WatchOrder":             false, // the server streams
		"/shopbus.order.v1.OrderService/CreateOrder":            false,
		"/shopbus.order.v1.OrderService/NoSuchMethod":           false,
		"/shopbus.order.v1.OrderService":                        false,
		"/readyz":                                               false,
		"/a/b/c":                                                false,
		"":                                                      false,
	} {
		if got := clientStreams(path); got != want {
			t.Errorf("clientStreams(%q) = %v, want %v", path, got, want)
		}
	}
}
