"""Data out of a study database: tables per stream (CSV, Parquet) and BIDS physiological files.

`wears export-data` is the command; `wears export` is the model export (`wears.export`).

Example:
    >>> study = Study.open("study.db")  # doctest: +SKIP
    >>> export_tables(study, "out", fmt="parquet")  # doctest: +SKIP
    >>> export_bids(study, "bids")  # doctest: +SKIP
"""

from .bids import export_bids
from .tables import StreamTable, event_rows, export_tables, read_stream, session_tables
from .timing import SessionClock, host_clock

__all__ = ["SessionClock", "StreamTable", "event_rows", "export_bids", "export_tables", "host_clock", "read_stream",
           "session_tables"]
