"""Analytics models: roll-up tables (``rollups``) and stored alert rules with their alerts
(``alerts``). Split in two modules so each concern stays small."""
from analytics.models.alerts import *  # noqa: F403
from analytics.models.rollups import *  # noqa: F403
