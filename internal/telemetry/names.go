package telemetry

// Instrument names of shopbus's own metrics, as OpenTelemetry names; the
// Prometheus exporter writes them with underscores and a unit suffix
// ("shopbus.consumer.lag.age" in seconds is shopbus_consumer_lag_age_seconds,
// a counter gets _total). docs/observability.md describes each.
const (
	// Consumers, recorded by messaging.Consume as it settles events.
	ConsumerHandled        = "shopbus.consumer.handled"         // counter; consumer, partition, outcome
	ConsumerHandleDuration = "shopbus.consumer.handle.duration" // histogram, s; consumer, outcome
	ConsumerBatchSize      = "shopbus.consumer.batch.size"      // histogram, events per committed batch; consumer

	// Consumers, sampled from JetStream by the lag monitor (internal/lag).
	ConsumerPending     = "shopbus.consumer.pending"     // gauge; consumer, partition
	ConsumerAckPending  = "shopbus.consumer.ack_pending" // gauge; consumer, partition
	ConsumerRedelivered = "shopbus.consumer.redelivered" // gauge; consumer, partition
	ConsumerDelivered   = "shopbus.consumer.delivered"   // counter; consumer, partition
	ConsumerAcked       = "shopbus.consumer.acked"       // counter; consumer, partition
	ConsumerLag         = "shopbus.consumer.lag"         // gauge, events; consumer, partition
	ConsumerLagAge      = "shopbus.consumer.lag.age"     // gauge, s; consumer, partition
	ConsumerRate        = "shopbus.consumer.rate"        // gauge, deliveries settled per second over the window (shopbus_consumer_rate_per_second); consumer
	ConsumerStatus      = "shopbus.consumer.status"      // gauge, 0 OK 1 WARN 2 STALL 3 STOP 4 ERR; consumer, partition

	// Outbox, recorded by messaging.Relay.
	OutboxBacklog         = "shopbus.outbox.backlog"          // gauge, rows; schema
	OutboxOldestAge       = "shopbus.outbox.oldest.age"       // gauge, s; schema
	OutboxPublished       = "shopbus.outbox.published"        // counter; schema
	OutboxPublishErrors   = "shopbus.outbox.publish.errors"   // counter; schema
	OutboxPublishDuration = "shopbus.outbox.publish.duration" // histogram, s; schema

	// Retention, recorded by messaging.Prune.
	RowsPruned = "shopbus.rows.pruned" // counter; schema, table

	// Dead-letter queue, counted by internal/deadletter.
	DeadLetters = "shopbus.dlq.entries" // gauge; stream, reason

	// Orders, recorded by the order service.
	OrderDecisionDuration = "shopbus.order.decision.duration" // histogram, s (CreateOrder → CONFIRMED or REJECTED); outcome
	OrdersNudged          = "shopbus.order.nudged"            // counter; action (reapplied, resent, unresolved): the watchdog's work on orders PENDING past their deadline
)

// SecondsBuckets are the bucket boundaries of shopbus's duration
// histograms, in seconds: 1 ms to 1 minute.
var SecondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
