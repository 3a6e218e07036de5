"""The one place where protobuf meets Flashpoint: commands, read models, audit answers.

Servicers, the typed client and the CLI reach protobuf messages only through this package,
so the wire format has one translation, tested by round trips.
"""

from __future__ import annotations

from service.api.translation.audit import (
    log_event_to_proto,
    progress_to_proto,
    verify_report_to_proto,
)
from service.api.translation.commands import (
    command_for_request,
    command_from_request,
    message_to_data,
    request_class,
    request_from_command,
    response_class,
    response_from_result,
    result_from_response,
)
from service.api.translation.readmodels import (
    escalation_to_proto,
    history_to_proto,
    incident_to_proto,
    list_incidents_arguments,
    negotiation_state_to_proto,
    posture_state_to_proto,
    sanctions_regime_to_proto,
    sanctions_state_to_proto,
)
from service.api.translation.status import log_status_to_proto
from service.api.translation.values import (
    message_to_json,
    optional_timestamp,
    parse_message,
    required,
    struct_of,
    timestamp_of,
)

__all__ = [
    "command_for_request",
    "command_from_request",
    "escalation_to_proto",
    "history_to_proto",
    "incident_to_proto",
    "list_incidents_arguments",
    "log_event_to_proto",
    "log_status_to_proto",
    "message_to_data",
    "message_to_json",
    "negotiation_state_to_proto",
    "optional_timestamp",
    "parse_message",
    "posture_state_to_proto",
    "progress_to_proto",
    "request_class",
    "request_from_command",
    "required",
    "response_class",
    "response_from_result",
    "result_from_response",
    "sanctions_regime_to_proto",
    "sanctions_state_to_proto",
    "struct_of",
    "timestamp_of",
    "verify_report_to_proto",
]
