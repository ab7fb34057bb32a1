"""Roll-up tables that keep analytics fast with millions of attempts (issue 6)."""
from django.db import models  # noqa: F401

__all__: list[str] = []
