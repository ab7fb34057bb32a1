"""Read-side functions of the analytics app (issue 6): ``overview`` and ``trends`` return the
exact JSON bodies of ``GET /analytics/overview`` and ``GET /analytics/trends``; the admin
dashboard calls them directly. Writes (the roll-ups) live in ``analytics.services``."""
from analytics.queries.aggregation import plan_segments, rollup_watermark
from analytics.queries.overview import current_state, overview
from analytics.queries.trends import BUCKETS, bucket_range, trends

__all__ = ["BUCKETS", "bucket_range", "current_state", "overview", "plan_segments", "rollup_watermark", "trends"]
