"""Read models (views and projection states) into query messages."""

from __future__ import annotations

from typing import Any

from projections.readmodels import EscalationView, HistoryView
from service.api.gen.flashpoint.v1 import common_pb2 as common_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.translation.commands import message_to_data
from service.api.translation.values import optional_timestamp, parse_message, required, struct_of
from service.application.queries import IncidentView, SanctionsRegimeView


def incident_to_proto(view: IncidentView) -> query_pb.Incident:
    return query_pb.Incident(
        name=view.name,
        id=str(view.id),
        version=view.version,
        kind=view.kind,
        actor=parse_message(common_pb.Party, view.actor),
        target=parse_message(common_pb.Party, view.target),
        location=parse_message(common_pb.Location, view.location),
        evidence=parse_message(common_pb.Evidence, view.evidence),
        details=struct_of(view.details),
        coding=common_pb.Coding(**view.coding),
        sources=[required(parse_message(common_pb.Source, source)) for source in view.sources],
        corroborations=view.corroborations,
        disputes=[query_pb.Dispute(**dispute) for dispute in view.disputes],
        corrections=view.corrections,
        retracted=view.retracted,
        retraction_reason=view.retraction_reason,
        ended_at=optional_timestamp(view.ended_at),
        create_time=optional_timestamp(view.create_time),
        update_time=optional_timestamp(view.update_time),
        confidence=view.confidence,
        reported_by=query_pb.Submitter(
            **{k: v or "" for k, v in view.reported_by.items() if k in _SUBMITTER_FIELDS}
        ),
    )


_SUBMITTER_FIELDS = ("principal", "client", "request_id")


def list_incidents_arguments(request: query_pb.ListIncidentsRequest) -> dict[str, Any]:
    """The filter fields of a ListIncidents request, unset ones left out."""
    data = message_to_data(request)
    for paging in ("page_size", "page_token", "min_position", "as_of"):
        data.pop(paging, None)
    return data


def sanctions_regime_to_proto(view: SanctionsRegimeView) -> query_pb.SanctionsRegime:
    return query_pb.SanctionsRegime(
        name=view.name,
        id=str(view.id),
        version=view.version,
        authority=view.authority,
        target=view.target,
        programme=view.programme,
        entities_count=view.entities_count,
        entity_names=view.entity_names,
        sectors=view.sectors,
        effective_from=optional_timestamp(view.effective_from),
        expires_at=optional_timestamp(view.expires_at),
        lifted=view.lifted,
        lifted_at=optional_timestamp(view.lifted_at),
    )


def negotiation_state_to_proto(state: dict[str, Any]) -> query_pb.Negotiation:
    """From the negotiations projection's state of a track (with its history)."""
    return query_pb.Negotiation(
        name=state["name"],
        id=state["id"],
        version=state["version"],
        parties=state["parties"],
        mediator=state["mediator"] or "",
        subject=state["subject"],
        proposed_by=state["proposed_by"],
        status=state["status"],
        rounds=state["rounds"],
        history=[
            query_pb.NegotiationStep(
                event=step["event"],
                status=step["status"],
                by=step["by"] or "",
                reason=step["reason"] or "",
                occurred_at=optional_timestamp(step["occurred_at"]),
                recorded_at=optional_timestamp(step["recorded_at"]),
                position=step["position"],
            )
            for step in state["history"]
        ],
    )


def sanctions_state_to_proto(state: dict[str, Any]) -> query_pb.SanctionsRegime:
    return query_pb.SanctionsRegime(
        name=state["name"],
        id=state["id"],
        version=state["version"],
        authority=state["authority"],
        target=state["target"],
        programme=state["programme"],
        entities_count=state["entities_count"],
        entity_names=state["entity_names"],
        sectors=state["sectors"],
        effective_from=optional_timestamp(state["effective_from"]),
        expires_at=optional_timestamp(state["expires_at"]),
        lifted=state["lifted_at"] is not None,
        lifted_at=optional_timestamp(state["lifted_at"]),
    )


def posture_state_to_proto(state: dict[str, Any]) -> query_pb.ForceDeployment:
    ends = state["ended_at"] or state["planned_end_at"]
    return query_pb.ForceDeployment(
        incident=state["name"],
        kind=state["kind"],
        actor=state["actor"],
        participants=state["participants"],
        title=state["name_of_exercise"],
        troop_count=state["troop_count"],
        starts_at=optional_timestamp(state["starts_at"]),
        ends_at=optional_timestamp(ends),
        ended=state["ended_at"] is not None,
        border_with=state["border_with"],
        distance_to_border_km=state["distance_to_border_km"] or 0.0,
        region=state["region"],
    )


def escalation_to_proto(view: EscalationView) -> query_pb.Escalation:
    return query_pb.Escalation(
        subject=view.subject,
        score=view.score,
        actor_score=view.actor_score,
        target_score=view.target_score,
        level=view.level,
        level_name=view.level_name,
        trend=view.trend,
        earlier_score=view.earlier_score,
        at=optional_timestamp(view.at),
        as_of=optional_timestamp(view.as_of),
        parameters_version=view.parameters_version,
        contributions=[
            query_pb.Contribution(
                resource=c.resource,
                development=c.development,
                kind=c.kind,
                occurred_at=optional_timestamp(c.occurred_at),
                contribution=c.contribution,
            )
            for c in view.contributions
        ],
    )


def history_to_proto(view: HistoryView, position: int) -> query_pb.GetEscalationHistoryResponse:
    return query_pb.GetEscalationHistoryResponse(
        subject=view.subject,
        points=[
            query_pb.EscalationPoint(
                at=optional_timestamp(point.at), score=point.score, level=point.level
            )
            for point in view.points
        ],
        parameters_version=view.parameters_version,
        as_of=optional_timestamp(view.as_of),
        position=position,
    )
