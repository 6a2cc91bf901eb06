"""The report: merge the measurements of many volunteers and show how X is blocked per ISP.

``probe report PATH...`` (:mod:`probe.report.cli`) reads JSONL(.gz) files and
folders with DuckDB (:mod:`probe.report.scan`, the project's ``report`` extra),
re-scores measurements written by older verdict rules and aggregates per ASN x
domain family x time bucket (:mod:`probe.report.engine`). The sporadic
statistics are pure functions (:mod:`probe.report.sporadic`); the outputs are sentences
(:mod:`probe.report.text`), CSV and JSON (:mod:`probe.report.tables`) and one
self-contained HTML page (:mod:`probe.report.html`). See docs/report.md.
"""
