"""Ingestion: rows of published event data (GDELT 2.0, ACLED) mapped to domain commands.

Each reader turns a row into an :class:`~service.ingest.records.Outcome`: a command ready to
send (with a request id derived from the row's own id, so a re-import replays) or a skip
with its reason. Nothing here sends anything; the CLI does, through whichever backend it
has. This package sees the domain only, like the application layer.
"""
