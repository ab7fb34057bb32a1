"""The seed's event type catalog: every event type the webhooks service supports.

``EVENT_TYPES`` lists the 42 event types from the spec's "Supported Event Types"
section, in the spec's order. Each entry is a plain dict:

- ``name``: the dotted event type, e.g. ``"call.started"``.
- ``category``: the part of the name before the dot (``"call"``, ``"lead"``,
  ``"appointment"``, ``"agent"``, ``"campaign"``, ``"notification"``,
  ``"system"``), except that ``crm.*`` and ``api.*`` events belong to the
  ``"integration"`` category.
- ``description``: the spec's one-line description, verbatim.
- ``sample_data``: a realistic ``data`` object for that event, i.e. the ``data``
  part of the standard webhook payload (not the envelope with ``event_type``,
  ``event_id``, ``timestamp`` and ``metadata``). ``lead.created`` and
  ``call.ended`` reproduce the spec's two example payloads exactly.

All values are JSON types only (str, int, float, bool, None, list, dict), and all
personal data is fake (example.com addresses, +1-555 phone numbers).
"""

EVENT_TYPES: list[dict] = [
    # ------------------------------------------------------------------
    # Call Center Events
    # ------------------------------------------------------------------
    {
        "name": "call.started",
        "category": "call",
        "description": "Call initiated",
        "sample_data": {
            "call": {
                "id": "call_790",
                "direction": "inbound",
                "status": "ringing",
                "from_number": "+1-555-0789",
                "to_number": "+1-555-0100",
                "started_at": "2025-08-05T18:05:00Z",
            },
            "customer": {
                "id": "customer_456",
                "name": "Jane Smith",
                "phone": "+1-555-0789",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
            },
        },
    },
    {
        "name": "call.ended",
        "category": "call",
        "description": "Call completed",
        "sample_data": {
            "call": {
                "id": "call_789",
                "duration": 450,
                "outcome": "completed",
                "recording_url": "https://recordings.vocelio.com/call_789.mp3",
                "started_at": "2025-08-05T17:52:30Z",
                "ended_at": "2025-08-05T18:00:00Z",
            },
            "customer": {
                "id": "customer_456",
                "name": "Jane Smith",
                "phone": "+1-555-0789",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
            },
        },
    },
    {
        "name": "call.answered",
        "category": "call",
        "description": "Call answered by agent",
        "sample_data": {
            "call": {
                "id": "call_790",
                "direction": "inbound",
                "status": "in_progress",
                "wait_time": 12,
                "started_at": "2025-08-05T18:05:00Z",
                "answered_at": "2025-08-05T18:05:12Z",
            },
            "customer": {
                "id": "customer_456",
                "name": "Jane Smith",
                "phone": "+1-555-0789",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
            },
        },
    },
    {
        "name": "call.missed",
        "category": "call",
        "description": "Call missed or abandoned",
        "sample_data": {
            "call": {
                "id": "call_791",
                "direction": "inbound",
                "outcome": "abandoned",
                "wait_time": 95,
                "queue": "sales",
                "started_at": "2025-08-05T18:10:00Z",
                "ended_at": "2025-08-05T18:11:35Z",
            },
            "customer": {
                "id": "customer_457",
                "name": "Robert Brown",
                "phone": "+1-555-0456",
            },
            "agent": None,
        },
    },
    {
        "name": "call.transferred",
        "category": "call",
        "description": "Call transferred between agents",
        "sample_data": {
            "call": {
                "id": "call_790",
                "transfer_type": "warm",
                "reason": "billing_question",
                "transferred_at": "2025-08-05T18:09:40Z",
            },
            "customer": {
                "id": "customer_456",
                "name": "Jane Smith",
                "phone": "+1-555-0789",
            },
            "from_agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
            },
            "to_agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
            },
        },
    },
    {
        "name": "call.recording_available",
        "category": "call",
        "description": "Call recording ready",
        "sample_data": {
            "call": {
                "id": "call_789",
                "duration": 450,
                "ended_at": "2025-08-05T18:00:00Z",
            },
            "recording": {
                "id": "rec_789",
                "url": "https://recordings.vocelio.com/call_789.mp3",
                "format": "mp3",
                "duration": 450,
                "size_bytes": 3600000,
                "available_at": "2025-08-05T18:01:15Z",
            },
            "customer": {
                "id": "customer_456",
                "name": "Jane Smith",
                "phone": "+1-555-0789",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
            },
        },
    },
    # ------------------------------------------------------------------
    # Lead Management Events
    # ------------------------------------------------------------------
    {
        "name": "lead.created",
        "category": "lead",
        "description": "New lead created",
        "sample_data": {
            "lead": {
                "id": "lead_123",
                "name": "John Doe",
                "email": "john.doe@example.com",
                "phone": "+1-555-0123",
                "source": "website",
                "score": 85,
                "created_at": "2025-08-05T17:30:00Z",
            },
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
            },
        },
    },
    {
        "name": "lead.updated",
        "category": "lead",
        "description": "Lead information updated",
        "sample_data": {
            "lead": {
                "id": "lead_123",
                "name": "John Doe",
                "email": "john.doe@example.com",
                "phone": "+1-555-0123",
                "source": "website",
                "score": 90,
                "created_at": "2025-08-05T17:30:00Z",
                "updated_at": "2025-08-06T09:15:00Z",
            },
            "changes": {
                "score": {"old": 85, "new": 90},
            },
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
            },
        },
    },
    {
        "name": "lead.converted",
        "category": "lead",
        "description": "Lead successfully converted",
        "sample_data": {
            "lead": {
                "id": "lead_123",
                "name": "John Doe",
                "email": "john.doe@example.com",
                "phone": "+1-555-0123",
                "source": "website",
                "score": 92,
                "created_at": "2025-08-05T17:30:00Z",
                "converted_at": "2025-08-08T14:20:00Z",
            },
            "conversion": {
                "customer_id": "customer_789",
                "deal_value": 2400.0,
                "currency": "USD",
                "product": "Premium Plan",
            },
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
            },
        },
    },
    {
        "name": "lead.lost",
        "category": "lead",
        "description": "Lead marked as lost",
        "sample_data": {
            "lead": {
                "id": "lead_124",
                "name": "Emily Davis",
                "email": "emily.davis@example.com",
                "phone": "+1-555-0124",
                "source": "referral",
                "score": 40,
                "created_at": "2025-08-01T11:00:00Z",
                "lost_at": "2025-08-07T16:45:00Z",
            },
            "reason": "chose_competitor",
            "notes": "Went with a lower-priced provider.",
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
            },
        },
    },
    {
        "name": "lead.assigned",
        "category": "lead",
        "description": "Lead assigned to agent",
        "sample_data": {
            "lead": {
                "id": "lead_125",
                "name": "Carlos Martinez",
                "email": "carlos.martinez@example.com",
                "phone": "+1-555-0125",
                "source": "campaign",
                "score": 72,
                "created_at": "2025-08-05T19:00:00Z",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
                "email": "mike@vocelio.com",
            },
            "assigned_by": "auto_routing",
            "assigned_at": "2025-08-05T19:00:05Z",
        },
    },
    # ------------------------------------------------------------------
    # Appointment Events
    # ------------------------------------------------------------------
    {
        "name": "appointment.scheduled",
        "category": "appointment",
        "description": "New appointment scheduled",
        "sample_data": {
            "appointment": {
                "id": "appt_321",
                "title": "Product demo",
                "status": "scheduled",
                "scheduled_for": "2025-08-12T15:00:00Z",
                "duration_minutes": 30,
                "timezone": "America/New_York",
                "location": "phone",
                "customer": {
                    "id": "customer_456",
                    "name": "Jane Smith",
                    "email": "jane.smith@example.com",
                    "phone": "+1-555-0789",
                },
                "created_at": "2025-08-05T18:02:00Z",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
                "email": "mike@vocelio.com",
            },
        },
    },
    {
        "name": "appointment.confirmed",
        "category": "appointment",
        "description": "Appointment confirmed by customer",
        "sample_data": {
            "appointment": {
                "id": "appt_321",
                "title": "Product demo",
                "status": "confirmed",
                "scheduled_for": "2025-08-12T15:00:00Z",
                "duration_minutes": 30,
                "customer": {
                    "id": "customer_456",
                    "name": "Jane Smith",
                    "email": "jane.smith@example.com",
                    "phone": "+1-555-0789",
                },
                "confirmed_at": "2025-08-06T10:30:00Z",
                "confirmation_channel": "sms",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
                "email": "mike@vocelio.com",
            },
        },
    },
    {
        "name": "appointment.cancelled",
        "category": "appointment",
        "description": "Appointment cancelled",
        "sample_data": {
            "appointment": {
                "id": "appt_322",
                "title": "Follow-up consultation",
                "status": "cancelled",
                "scheduled_for": "2025-08-13T17:00:00Z",
                "duration_minutes": 45,
                "customer": {
                    "id": "customer_457",
                    "name": "Robert Brown",
                    "email": "robert.brown@example.com",
                    "phone": "+1-555-0456",
                },
                "cancelled_at": "2025-08-10T08:20:00Z",
                "cancelled_by": "customer",
                "cancellation_reason": "Schedule conflict",
            },
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
            },
        },
    },
    {
        "name": "appointment.completed",
        "category": "appointment",
        "description": "Appointment completed",
        "sample_data": {
            "appointment": {
                "id": "appt_321",
                "title": "Product demo",
                "status": "completed",
                "scheduled_for": "2025-08-12T15:00:00Z",
                "duration_minutes": 30,
                "customer": {
                    "id": "customer_456",
                    "name": "Jane Smith",
                    "email": "jane.smith@example.com",
                    "phone": "+1-555-0789",
                },
                "completed_at": "2025-08-12T15:34:00Z",
                "outcome": "interested",
                "notes": "Requested a pricing proposal.",
            },
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
                "email": "mike@vocelio.com",
            },
        },
    },
    {
        "name": "appointment.rescheduled",
        "category": "appointment",
        "description": "Appointment rescheduled",
        "sample_data": {
            "appointment": {
                "id": "appt_323",
                "title": "Onboarding call",
                "status": "scheduled",
                "scheduled_for": "2025-08-15T14:00:00Z",
                "previous_scheduled_for": "2025-08-14T14:00:00Z",
                "duration_minutes": 60,
                "customer": {
                    "id": "customer_789",
                    "name": "John Doe",
                    "email": "john.doe@example.com",
                    "phone": "+1-555-0123",
                },
                "rescheduled_at": "2025-08-11T09:05:00Z",
                "rescheduled_by": "agent",
            },
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
            },
        },
    },
    {
        "name": "appointment.reminder_sent",
        "category": "appointment",
        "description": "Reminder notification sent",
        "sample_data": {
            "appointment": {
                "id": "appt_321",
                "title": "Product demo",
                "status": "confirmed",
                "scheduled_for": "2025-08-12T15:00:00Z",
                "customer": {
                    "id": "customer_456",
                    "name": "Jane Smith",
                    "email": "jane.smith@example.com",
                    "phone": "+1-555-0789",
                },
            },
            "reminder": {
                "id": "rem_654",
                "channel": "sms",
                "recipient": "+1-555-0789",
                "hours_before": 24,
                "sent_at": "2025-08-11T15:00:00Z",
            },
        },
    },
    # ------------------------------------------------------------------
    # Agent Events
    # ------------------------------------------------------------------
    {
        "name": "agent.online",
        "category": "agent",
        "description": "Agent came online",
        "sample_data": {
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
                "team": "sales",
            },
            "status": "online",
            "previous_status": "offline",
            "changed_at": "2025-08-05T13:00:00Z",
        },
    },
    {
        "name": "agent.offline",
        "category": "agent",
        "description": "Agent went offline",
        "sample_data": {
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
                "team": "sales",
            },
            "status": "offline",
            "previous_status": "available",
            "session_duration": 28800,
            "changed_at": "2025-08-05T21:00:00Z",
        },
    },
    {
        "name": "agent.busy",
        "category": "agent",
        "description": "Agent status changed to busy",
        "sample_data": {
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
                "email": "mike@vocelio.com",
                "team": "support",
            },
            "status": "busy",
            "previous_status": "available",
            "reason": "on_call",
            "call_id": "call_790",
            "changed_at": "2025-08-05T18:05:12Z",
        },
    },
    {
        "name": "agent.available",
        "category": "agent",
        "description": "Agent became available",
        "sample_data": {
            "agent": {
                "id": "agent_123",
                "name": "Mike Wilson",
                "email": "mike@vocelio.com",
                "team": "support",
            },
            "status": "available",
            "previous_status": "busy",
            "changed_at": "2025-08-05T18:12:30Z",
        },
    },
    {
        "name": "agent.performance_updated",
        "category": "agent",
        "description": "Agent metrics updated",
        "sample_data": {
            "agent": {
                "id": "agent_456",
                "name": "Sarah Johnson",
                "email": "sarah@vocelio.com",
                "team": "sales",
            },
            "period": {
                "start": "2025-08-05T00:00:00Z",
                "end": "2025-08-05T23:59:59Z",
            },
            "metrics": {
                "calls_handled": 42,
                "average_handle_time": 385,
                "first_call_resolution_rate": 0.81,
                "conversion_rate": 0.18,
                "customer_satisfaction": 4.6,
            },
            "updated_at": "2025-08-06T00:05:00Z",
        },
    },
    # ------------------------------------------------------------------
    # Campaign Events
    # ------------------------------------------------------------------
    {
        "name": "campaign.started",
        "category": "campaign",
        "description": "Campaign launched",
        "sample_data": {
            "campaign": {
                "id": "camp_101",
                "name": "Summer Renewal Outreach",
                "type": "outbound_call",
                "status": "active",
                "total_contacts": 5000,
                "started_at": "2025-08-05T14:00:00Z",
                "scheduled_end": "2025-08-19T22:00:00Z",
            },
            "started_by": {
                "id": "user_11",
                "name": "Laura Chen",
                "email": "laura.chen@vocelio.com",
            },
        },
    },
    {
        "name": "campaign.completed",
        "category": "campaign",
        "description": "Campaign finished",
        "sample_data": {
            "campaign": {
                "id": "camp_101",
                "name": "Summer Renewal Outreach",
                "type": "outbound_call",
                "status": "completed",
                "started_at": "2025-08-05T14:00:00Z",
                "completed_at": "2025-08-19T22:00:00Z",
            },
            "results": {
                "total_contacts": 5000,
                "contacts_reached": 3120,
                "leads_generated": 410,
                "conversions": 96,
                "conversion_rate": 0.0192,
            },
        },
    },
    {
        "name": "campaign.paused",
        "category": "campaign",
        "description": "Campaign paused",
        "sample_data": {
            "campaign": {
                "id": "camp_102",
                "name": "Q3 Appointment Setting",
                "type": "outbound_call",
                "status": "paused",
                "contacts_processed": 1250,
                "total_contacts": 4000,
                "paused_at": "2025-08-07T12:30:00Z",
            },
            "reason": "Manual pause for script update",
            "paused_by": {
                "id": "user_11",
                "name": "Laura Chen",
                "email": "laura.chen@vocelio.com",
            },
        },
    },
    {
        "name": "campaign.performance_updated",
        "category": "campaign",
        "description": "Campaign metrics updated",
        "sample_data": {
            "campaign": {
                "id": "camp_101",
                "name": "Summer Renewal Outreach",
                "status": "active",
            },
            "metrics": {
                "calls_made": 1820,
                "contacts_reached": 1140,
                "answer_rate": 0.63,
                "leads_generated": 152,
                "conversions": 34,
                "conversion_rate": 0.0187,
                "cost_per_lead": 12.5,
            },
            "updated_at": "2025-08-08T00:00:00Z",
        },
    },
    # ------------------------------------------------------------------
    # Notification Events
    # ------------------------------------------------------------------
    {
        "name": "notification.sent",
        "category": "notification",
        "description": "Notification dispatched",
        "sample_data": {
            "notification": {
                "id": "notif_555",
                "channel": "email",
                "template": "appointment_confirmation",
                "recipient": "jane.smith@example.com",
                "subject": "Your appointment is confirmed",
                "status": "sent",
                "sent_at": "2025-08-06T10:30:05Z",
            },
            "customer": {
                "id": "customer_456",
                "name": "Jane Smith",
            },
        },
    },
    {
        "name": "notification.delivered",
        "category": "notification",
        "description": "Notification delivered",
        "sample_data": {
            "notification": {
                "id": "notif_555",
                "channel": "email",
                "recipient": "jane.smith@example.com",
                "status": "delivered",
                "sent_at": "2025-08-06T10:30:05Z",
                "delivered_at": "2025-08-06T10:30:09Z",
            },
            "provider": {
                "name": "sendgrid",
                "message_id": "msg_8f3a2c",
            },
        },
    },
    {
        "name": "notification.clicked",
        "category": "notification",
        "description": "Notification clicked",
        "sample_data": {
            "notification": {
                "id": "notif_555",
                "channel": "email",
                "recipient": "jane.smith@example.com",
                "status": "clicked",
                "clicked_at": "2025-08-06T11:02:41Z",
            },
            "click": {
                "url": "https://app.vocelio.com/appointments/appt_321",
                "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)",
                "ip_address": "203.0.113.24",
            },
        },
    },
    {
        "name": "notification.failed",
        "category": "notification",
        "description": "Notification delivery failed",
        "sample_data": {
            "notification": {
                "id": "notif_556",
                "channel": "sms",
                "recipient": "+1-555-0456",
                "status": "failed",
                "sent_at": "2025-08-06T10:31:00Z",
                "failed_at": "2025-08-06T10:31:03Z",
            },
            "error": {
                "code": "invalid_number",
                "message": "The destination number is not reachable.",
                "retryable": False,
            },
        },
    },
    # ------------------------------------------------------------------
    # System Events
    # ------------------------------------------------------------------
    {
        "name": "system.health_alert",
        "category": "system",
        "description": "System health issue detected",
        "sample_data": {
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
    },
    {
        "name": "system.maintenance",
        "category": "system",
        "description": "Maintenance mode activated",
        "sample_data": {
            "maintenance": {
                "id": "maint_42",
                "status": "in_progress",
                "affected_services": ["analytics", "reporting"],
                "message": "Scheduled database upgrade.",
                "starts_at": "2025-08-10T02:00:00Z",
                "expected_end_at": "2025-08-10T04:00:00Z",
            },
        },
    },
    {
        "name": "system.error",
        "category": "system",
        "description": "System error occurred",
        "sample_data": {
            "error": {
                "id": "err_7731",
                "service": "notification_dispatcher",
                "code": "QUEUE_UNAVAILABLE",
                "message": "Message broker connection refused",
                "severity": "error",
                "occurred_at": "2025-08-05T20:40:12Z",
            },
            "context": {
                "host": "worker-3",
                "environment": "production",
                "request_id": "req_5d2e9b",
            },
        },
    },
    {
        "name": "system.backup_completed",
        "category": "system",
        "description": "Backup operation completed",
        "sample_data": {
            "backup": {
                "id": "backup_20250806",
                "type": "full",
                "status": "completed",
                "size_bytes": 5368709120,
                "duration": 1260,
                "location": "s3://vocelio-backups/2025-08-06/full.tar.gz",
                "started_at": "2025-08-06T03:00:00Z",
                "completed_at": "2025-08-06T03:21:00Z",
            },
        },
    },
    # ------------------------------------------------------------------
    # Integration Events
    # ------------------------------------------------------------------
    {
        "name": "crm.sync_completed",
        "category": "integration",
        "description": "CRM synchronization completed",
        "sample_data": {
            "sync": {
                "id": "sync_3301",
                "crm": "salesforce",
                "direction": "bidirectional",
                "status": "completed",
                "records_processed": 1200,
                "records_created": 85,
                "records_updated": 1102,
                "records_failed": 13,
                "started_at": "2025-08-05T22:00:00Z",
                "completed_at": "2025-08-05T22:04:30Z",
            },
        },
    },
    {
        "name": "crm.sync_failed",
        "category": "integration",
        "description": "CRM synchronization failed",
        "sample_data": {
            "sync": {
                "id": "sync_3302",
                "crm": "hubspot",
                "direction": "outbound",
                "status": "failed",
                "records_processed": 240,
                "started_at": "2025-08-05T23:00:00Z",
                "failed_at": "2025-08-05T23:01:10Z",
            },
            "error": {
                "code": "auth_expired",
                "message": "OAuth access token expired",
                "retryable": True,
            },
        },
    },
    {
        "name": "api.rate_limit_exceeded",
        "category": "integration",
        "description": "API rate limit exceeded",
        "sample_data": {
            "client": {
                "id": "client_77",
                "name": "Acme CRM Connector",
            },
            "rate_limit": {
                "limit": 1000,
                "window_seconds": 3600,
                "current_count": 1001,
                "reset_at": "2025-08-05T19:00:00Z",
            },
            "endpoint": "/api/v1/leads",
            "exceeded_at": "2025-08-05T18:42:17Z",
        },
    },
    {
        "name": "api.error",
        "category": "integration",
        "description": "API error occurred",
        "sample_data": {
            "request": {
                "id": "req_9c41f0",
                "method": "POST",
                "path": "/api/v1/appointments",
                "client_id": "client_77",
            },
            "error": {
                "status_code": 500,
                "code": "internal_error",
                "message": "Unexpected error while creating appointment",
            },
            "occurred_at": "2025-08-05T18:50:03Z",
        },
    },
]
