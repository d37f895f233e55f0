"""Write stand-in clips (test pattern + tone, ffmpeg) for every clip of a protocol that is missing.

    python examples/study/make_clips.py [examples/study/protocol.toml]

Replace them with your real clips (same file names, or edit the protocol) before a study.
"""

import sys

from wears.session.clips import make_protocol_clips
from wears.session.protocol import load_protocol

protocol = load_protocol(sys.argv[1] if len(sys.argv) > 1 else "examples/study/protocol.toml")
for path in make_protocol_clips(protocol):
    print(f"made {path}")
