"""The measurement contract: what a line of the probe's data says and how it is spelled.

This package owns the measurement format (docs/format.md, ``probe/schema``): its version,
its vocabularies (:mod:`probe.format.vocab`: statuses, methods, roles, tags, triggers,
operations, as ``StrEnum``\\ s that every reader and writer imports instead of retyping
literals; a test checks the JSON Schema's enums equal them), the writer that turns a
campaign's records into OONI-format measurements (:mod:`~probe.format.writer`), and the readers
that turn a line back into the observations the verdict judges (:mod:`~probe.format.view`, the
records; :mod:`~probe.format.reader`, our lines of every version; :mod:`~probe.format.ooni` and
:mod:`~probe.format.ooni_reader`, OONI's web_connectivity of every version; the field readers
both share in :mod:`~probe.format.fields`). A value of the format is spelled here
once: a reader comparing a line's field compares it with a member of a vocabulary.
"""
