package telemetry

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	telemetryv1 "github.com/shopbus/shopbus/gen/go/shopbus/telemetry/v1"
	"github.com/shopbus/shopbus/internal/servicekit"
)

// DefaultStatsPage is GetDeviceStats' page size when the request sets none.
const DefaultStatsPage = 500

// GetDeviceStats returns a page of the device's rollups whose minute is in
// [start_time, end_time), ordered by minute, metric and unit, and the next
// page's token (empty on the last page): one statement, on the primary key.
func (s *Service) GetDeviceStats(ctx context.Context, req *telemetryv1.GetDeviceStatsRequest) ([]*telemetryv1.Rollup, string, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultStatsPage
	}
	after, err := decodeStatsToken(req.GetPageToken())
	if err != nil {
		return nil, "", err
	}
	rows, err := s.Pool.Query(ctx, `SELECT minute, metric, unit, count, sum, min, max FROM device_rollups
		WHERE device_id = $1 AND minute >= $2 AND minute < $3 AND ($4 = '' OR metric = $4)
			AND (NOT $5 OR (minute, metric, unit) > ($6, $7, $8))
		ORDER BY minute, metric, unit LIMIT $9`,
		req.GetDeviceId(), req.GetStartTime().AsTime(), req.GetEndTime().AsTime(), req.GetMetric(),
		after != nil, after.GetMinute().AsTime(), after.GetMetric(), after.GetUnit(), size+1)
	if err != nil {
		return nil, "", fmt.Errorf("get device stats %s: %w", req.GetDeviceId(), err)
	}
	return servicekit.Page(rows, size, scanRollup, statsToken, "get device stats")
}

// scanRollup reads a row of GetDeviceStats' query.
func scanRollup(row pgx.Row) (*telemetryv1.Rollup, error) {
	r := &telemetryv1.Rollup{}
	var minute time.Time
	if err := row.Scan(&minute, &r.Metric, &r.Unit, &r.Count, &r.Sum, &r.Min, &r.Max); err != nil {
		return nil, err
	}
	r.Minute = timestamppb.New(minute)
	r.Mean = r.GetSum() / float64(r.GetCount())
	return r, nil
}

// statsToken is the page token after last: its minute (Unix microseconds),
// metric and unit.
func statsToken(last *telemetryv1.Rollup) string {
	s := strconv.FormatInt(last.GetMinute().AsTime().UnixMicro(), 10) + "|" + last.GetMetric() + "|" + last.GetUnit()
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// decodeStatsToken reads a statsToken (nil for none).
func decodeStatsToken(token string) (*telemetryv1.Rollup, error) {
	if token == "" {
		return nil, nil
	}
	bad := fmt.Errorf("%w: page_token is not one GetDeviceStats returned", ErrInvalid)
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, bad
	}
	parts := strings.SplitN(string(b), "|", 3)
	if len(parts) != 3 {
		return nil, bad
	}
	micros, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return nil, bad
	}
	return &telemetryv1.Rollup{Minute: timestamppb.New(time.UnixMicro(micros)), Metric: parts[1], Unit: parts[2]}, nil
}
