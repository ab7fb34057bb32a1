"""Subscription rules: which events an endpoint receives. Pure functions, no ORM.

Today: event-type patterns. Payload conditions (``WebhookEndpoint.filters``) come with issue 3.
"""


def event_type_matches(patterns: list[str], event_type: str) -> bool:
    """True when ``event_type`` (``"lead.created"``) matches any pattern in ``patterns``.

    Patterns: an exact type (``lead.created``), a prefix wildcard (``lead.*`` matches every type
    starting with ``lead.``, at any depth) or ``*`` (everything), as Svix and Convoy use them.
    """
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
