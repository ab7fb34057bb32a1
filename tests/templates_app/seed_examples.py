"""The seed's example templates and event envelopes, literally (seed-webhooks-service.md:
"Standard Payload Format", "Call Event Payload", "Payload Transformation", "Integration Examples")."""

# "Standard Payload Format"
LEAD_CREATED = {
    "event_type": "lead.created",
    "event_id": "evt_123456789",
    "timestamp": "2025-08-05T17:30:00Z",
    "data": {
        "lead": {
            "id": "lead_123",
            "name": "John Doe",
            "email": "john.doe@example.com",
            "phone": "+1-555-0123",
            "source": "website",
            "score": 85,
            "created_at": "2025-08-05T17:30:00Z",
        },
        "agent": {"id": "agent_456", "name": "Sarah Johnson", "email": "sarah@vocelio.com"},
    },
    "metadata": {"source_service": "lead_management", "version": "1.0", "retry_count": 0},
}

# "Call Event Payload" (the seed gives it no metadata)
CALL_ENDED = {
    "event_type": "call.ended",
    "event_id": "call_789",
    "timestamp": "2025-08-05T18:00:00Z",
    "data": {
        "call": {
            "id": "call_789",
            "duration": 450,
            "outcome": "completed",
            "recording_url": "https://recordings.vocelio.com/call_789.mp3",
            "started_at": "2025-08-05T17:52:30Z",
            "ended_at": "2025-08-05T18:00:00Z",
        },
        "customer": {"id": "customer_456", "name": "Jane Smith", "phone": "+1-555-0789"},
        "agent": {"id": "agent_123", "name": "Mike Wilson"},
    },
}

# The seed has no system.health_alert payload; this one carries the catalog's sample data.
HEALTH_ALERT = {
    "event_type": "system.health_alert",
    "event_id": "evt_alert_901",
    "timestamp": "2025-08-05T20:15:00Z",
    "data": {
        "alert": {
            "id": "alert_901",
            "name": "High API latency",
            "severity": "warning",
            "service": "call_routing",
            "metric": "p95_latency_ms",
            "value": 1250.0,
            "threshold": 800.0,
            "triggered_at": "2025-08-05T20:15:00Z",
        },
    },
    "metadata": {"source_service": "monitoring", "version": "1.0", "retry_count": 0},
}

# "Payload Transformation" (the Salesforce lead sync's "salesforce_lead_template")
SALESFORCE_TEMPLATE = {
    "crm_lead": {
        "external_id": "{{ data.lead.id }}",
        "contact_name": "{{ data.lead.name }}",
        "email_address": "{{ data.lead.email }}",
        "phone_number": "{{ data.lead.phone }}",
        "lead_score": "{{ data.lead.score }}",
        "assigned_rep": "{{ data.agent.name }}",
    },
    "timestamp": "{{ timestamp }}",
    "source": "vocelio_ai_platform",
}
SALESFORCE_OUTPUT = {
    "crm_lead": {
        "external_id": "lead_123",
        "contact_name": "John Doe",
        "email_address": "john.doe@example.com",
        "phone_number": "+1-555-0123",
        "lead_score": 85,
        "assigned_rep": "Sarah Johnson",
    },
    "timestamp": "2025-08-05T17:30:00Z",
    "source": "vocelio_ai_platform",
}

# "Slack Notifications"
SLACK_TEMPLATE = {
    "text": "🚨 Alert: {{ event_type }}",
    "attachments": [{
        "color": "danger",
        "fields": [{
            "title": "Event",
            "value": "{{ event_type }}",
            "short": True,
        }, {
            "title": "Time",
            "value": "{{ timestamp }}",
            "short": True,
        }],
    }],
}

# "Analytics Dashboard"
ANALYTICS_TEMPLATE = {
    "metric_type": "{{ event_type }}",
    "value": 1,
    "timestamp": "{{ timestamp }}",
    "dimensions": {
        "agent_id": "{{ data.agent.id }}",
        "source": "vocelio",
    },
}
