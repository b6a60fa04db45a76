package messaging

import "time"

// SetPublishBudget sets how long r's passes go on publishing rows
// (passPublishBudget), for tests.
func SetPublishBudget(r *Relay, d time.Duration) { r.publishBudget = d }
