"""The only code that opens sockets: one small module per protocol.

Each primitive is an ``async`` function that performs one network operation
and returns an immutable record from :mod:`probe.records`. A primitive raises
only for bad input (a malformed address, an unknown query type), never for a
network outcome: every outcome is a failure string from
:mod:`probe.failures`. Primitives know nothing of campaigns, storage or
verdicts; the caller passes the clock, the transaction id and the tags.
"""
