"""Video-stimulus labelling sessions: protocol files, the session web app, self-reports, labels.

`wears session PROTOCOL.toml` runs one participant through a study protocol: a resting
baseline, clips shown full screen in the browser with Self-Assessment Manikin ratings after
each, wash-outs and attention checks, while the watch records into the study database.
"""

from .protocol import StudyProtocol, load_protocol

__all__ = ["StudyProtocol", "load_protocol"]
