"""``probe collector serve``: receives volunteers' measurements (OONI's collector protocol).

:mod:`probe.collector.app` is the HTTP API (Starlette, served by uvicorn), and
:mod:`probe.collector.store` the write-ahead archive and its SQLite index. Both need the
project's ``collector`` extra; docs/collector.md says how to run one.
"""
