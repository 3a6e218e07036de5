"""The tamper-evident log: a hash chain over every stored event, seals, verify, export/import.

Canonical bytes of an event (position p, resource id, version, type, stored state — which
holds ``recorded_at`` and the payload, byte for byte as stored)::

    content_hash = sha256("flashpoint-event/1\\0" resource "\\0" version "\\0" type "\\0" state)
    event_hash   = sha256(p as 8 bytes big-endian || content_hash)
    chain_hash_p = sha256(chain_hash_of_previous_event || event_hash)   (genesis: 32 zero bytes)

Where the chain is computed: not in the command path, but by ONE chainer following the log
in position order (the projection worker runs it), writing ``fp_chain`` rows beside the
events. Both stores serialise appends (SQLite has one writer; the PostgreSQL recorder locks
the events table per insert), so positions become visible in order and the chain, being a
pure function of the log in that order, cannot fork however many servers append; two
chainers racing compute identical rows and the primary key keeps one. The cost is a short
window between an append and its chaining; ``verify`` reports such a tail separately.

Seals (``fp_seals``) commit to the chain head at a position, with the event count, and may be
signed with an Ed25519 key kept outside the database: whoever can write the database can
recompute a consistent chain, but cannot forge a seal without the key, and cannot change a
sealed prefix without every seal copied elsewhere exposing it.
"""
