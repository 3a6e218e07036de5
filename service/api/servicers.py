"""gRPC servicers: thin adapters from messages to the application and back.

Errors are raised, never turned into statuses here: the interceptor maps them in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from service import commands as c
from service import queries
from service.api import translation as tr
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2 as pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.interceptors import current_client, current_principal
from service.application import FlashpointApplication, Submitter

R = TypeVar("R", bound=Message)
Context = grpc.ServicerContext


class CommandServicer(command_grpc.CommandServiceServicer):
    def __init__(self, app: FlashpointApplication) -> None:
        self._app = app

    def _execute(
        self, command_class: type[c.Command], request: Message, response_class: type[R]
    ) -> R:
        command = tr.command_from_request(command_class, request)
        submitter = Submitter(current_principal.get().name, current_client.get())
        return tr.response_from_result(self._app.execute(command, submitter), response_class)

    def ReportIncursion(
        self, request: pb.ReportIncursionRequest, context: Context
    ) -> pb.ReportIncursionResponse:
        return self._execute(c.ReportIncursion, request, pb.ReportIncursionResponse)

    def ReportStrike(
        self, request: pb.ReportStrikeRequest, context: Context
    ) -> pb.ReportStrikeResponse:
        return self._execute(c.ReportStrike, request, pb.ReportStrikeResponse)

    def ReportClash(
        self, request: pb.ReportClashRequest, context: Context
    ) -> pb.ReportClashResponse:
        return self._execute(c.ReportClash, request, pb.ReportClashResponse)

    def StartMilitaryExercise(
        self, request: pb.StartMilitaryExerciseRequest, context: Context
    ) -> pb.StartMilitaryExerciseResponse:
        return self._execute(c.StartMilitaryExercise, request, pb.StartMilitaryExerciseResponse)

    def EndMilitaryExercise(
        self, request: pb.EndMilitaryExerciseRequest, context: Context
    ) -> pb.EndMilitaryExerciseResponse:
        return self._execute(c.EndMilitaryExercise, request, pb.EndMilitaryExerciseResponse)

    def DeployTroops(
        self, request: pb.DeployTroopsRequest, context: Context
    ) -> pb.DeployTroopsResponse:
        return self._execute(c.DeployTroops, request, pb.DeployTroopsResponse)

    def RaiseAlert(self, request: pb.RaiseAlertRequest, context: Context) -> pb.RaiseAlertResponse:
        return self._execute(c.RaiseAlert, request, pb.RaiseAlertResponse)

    def ReportThreat(
        self, request: pb.ReportThreatRequest, context: Context
    ) -> pb.ReportThreatResponse:
        return self._execute(c.ReportThreat, request, pb.ReportThreatResponse)

    def RecordStatement(
        self, request: pb.RecordStatementRequest, context: Context
    ) -> pb.RecordStatementResponse:
        return self._execute(c.RecordStatement, request, pb.RecordStatementResponse)

    def IssueCondemnation(
        self, request: pb.IssueCondemnationRequest, context: Context
    ) -> pb.IssueCondemnationResponse:
        return self._execute(c.IssueCondemnation, request, pb.IssueCondemnationResponse)

    def SummonEnvoy(
        self, request: pb.SummonEnvoyRequest, context: Context
    ) -> pb.SummonEnvoyResponse:
        return self._execute(c.SummonEnvoy, request, pb.SummonEnvoyResponse)

    def ExpelDiplomats(
        self, request: pb.ExpelDiplomatsRequest, context: Context
    ) -> pb.ExpelDiplomatsResponse:
        return self._execute(c.ExpelDiplomats, request, pb.ExpelDiplomatsResponse)

    def ReportCyberAttack(
        self, request: pb.ReportCyberAttackRequest, context: Context
    ) -> pb.ReportCyberAttackResponse:
        return self._execute(c.ReportCyberAttack, request, pb.ReportCyberAttackResponse)

    def ImposeSanctions(
        self, request: pb.ImposeSanctionsRequest, context: Context
    ) -> pb.ImposeSanctionsResponse:
        return self._execute(c.ImposeSanctions, request, pb.ImposeSanctionsResponse)

    def ExtendSanctions(
        self, request: pb.ExtendSanctionsRequest, context: Context
    ) -> pb.ExtendSanctionsResponse:
        return self._execute(c.ExtendSanctions, request, pb.ExtendSanctionsResponse)

    def EaseSanctions(
        self, request: pb.EaseSanctionsRequest, context: Context
    ) -> pb.EaseSanctionsResponse:
        return self._execute(c.EaseSanctions, request, pb.EaseSanctionsResponse)

    def LiftSanctions(
        self, request: pb.LiftSanctionsRequest, context: Context
    ) -> pb.LiftSanctionsResponse:
        return self._execute(c.LiftSanctions, request, pb.LiftSanctionsResponse)

    def ProposeNegotiations(
        self, request: pb.ProposeNegotiationsRequest, context: Context
    ) -> pb.ProposeNegotiationsResponse:
        return self._execute(c.ProposeNegotiations, request, pb.ProposeNegotiationsResponse)

    def HoldNegotiationRound(
        self, request: pb.HoldNegotiationRoundRequest, context: Context
    ) -> pb.HoldNegotiationRoundResponse:
        return self._execute(c.HoldNegotiationRound, request, pb.HoldNegotiationRoundResponse)

    def PauseNegotiations(
        self, request: pb.PauseNegotiationsRequest, context: Context
    ) -> pb.PauseNegotiationsResponse:
        return self._execute(c.PauseNegotiations, request, pb.PauseNegotiationsResponse)

    def ResumeNegotiations(
        self, request: pb.ResumeNegotiationsRequest, context: Context
    ) -> pb.ResumeNegotiationsResponse:
        return self._execute(c.ResumeNegotiations, request, pb.ResumeNegotiationsResponse)

    def RejectNegotiations(
        self, request: pb.RejectNegotiationsRequest, context: Context
    ) -> pb.RejectNegotiationsResponse:
        return self._execute(c.RejectNegotiations, request, pb.RejectNegotiationsResponse)

    def SignAgreement(
        self, request: pb.SignAgreementRequest, context: Context
    ) -> pb.SignAgreementResponse:
        return self._execute(c.SignAgreement, request, pb.SignAgreementResponse)

    def CorroborateIncident(
        self, request: pb.CorroborateIncidentRequest, context: Context
    ) -> pb.CorroborateIncidentResponse:
        return self._execute(c.CorroborateIncident, request, pb.CorroborateIncidentResponse)

    def DisputeIncident(
        self, request: pb.DisputeIncidentRequest, context: Context
    ) -> pb.DisputeIncidentResponse:
        return self._execute(c.DisputeIncident, request, pb.DisputeIncidentResponse)

    def CorrectIncident(
        self, request: pb.CorrectIncidentRequest, context: Context
    ) -> pb.CorrectIncidentResponse:
        return self._execute(c.CorrectIncident, request, pb.CorrectIncidentResponse)

    def RetractIncident(
        self, request: pb.RetractIncidentRequest, context: Context
    ) -> pb.RetractIncidentResponse:
        return self._execute(c.RetractIncident, request, pb.RetractIncidentResponse)


def _keep_going(context: Context) -> bool:
    remaining = context.time_remaining()
    return context.is_active() and (remaining is None or remaining > 0)


class QueryServicer(query_grpc.QueryServiceServicer):
    def __init__(self, app: FlashpointApplication) -> None:
        self._app = app

    def GetIncident(
        self, request: query_pb.GetIncidentRequest, context: Context
    ) -> query_pb.GetIncidentResponse:
        view = queries.get_incident(self._app, request.name)
        return query_pb.GetIncidentResponse(incident=tr.incident_to_proto(view))

    def ListIncidents(
        self, request: query_pb.ListIncidentsRequest, context: Context
    ) -> query_pb.ListIncidentsResponse:
        page = queries.list_incidents(
            self._app,
            queries.incident_filter(**tr.list_incidents_arguments(request)),
            page_size=request.page_size,
            page_token=request.page_token,
            keep_going=lambda: _keep_going(context),
        )
        return tr.incident_page_to_proto(page)

    def GetSanctionsRegime(
        self, request: query_pb.GetSanctionsRegimeRequest, context: Context
    ) -> query_pb.GetSanctionsRegimeResponse:
        view = queries.get_sanctions_regime(self._app, request.name)
        return query_pb.GetSanctionsRegimeResponse(regime=tr.sanctions_regime_to_proto(view))

    def GetNegotiation(
        self, request: query_pb.GetNegotiationRequest, context: Context
    ) -> query_pb.GetNegotiationResponse:
        view = queries.get_negotiation(self._app, request.name)
        return query_pb.GetNegotiationResponse(negotiation=tr.negotiation_to_proto(view))


class AuditServicer(audit_grpc.AuditServiceServicer):
    def __init__(self, app: FlashpointApplication) -> None:
        self._app = app

    def ReadEvents(
        self, request: audit_pb.ReadEventsRequest, context: Context
    ) -> Iterator[audit_pb.ReadEventsResponse]:
        for view in queries.read_events(self._app, request.from_position, request.limit):
            if not context.is_active():
                return
            yield audit_pb.ReadEventsResponse(event=tr.log_event_to_proto(view))

    def GetHistory(
        self, request: audit_pb.GetHistoryRequest, context: Context
    ) -> audit_pb.GetHistoryResponse:
        events = queries.history(self._app, request.name)
        return audit_pb.GetHistoryResponse(events=[tr.log_event_to_proto(e) for e in events])
