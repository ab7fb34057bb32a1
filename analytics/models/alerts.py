"""Alert rules (metric, threshold, period, action) and the alerts they raise (issue 6)."""
from django.db import models  # noqa: F401

__all__: list[str] = []
