"""Challenge-response with the watch key provisioned at flash time (docs/protocol.md).

The host asks for a challenge (a fresh random nonce), answers with its own nonce and
HMAC-SHA256(key, label + watch nonce + host nonce) cut to 16 bytes. A challenge serves one
answer, right or wrong, so a wrong guess costs a round trip; the session lasts until the
link drops. Without a provisioned key nobody can authenticate.
"""

import os

from watch import protocol as P
from watch.hmac_sha256 import equal, hmac_sha256

_FAILURES_MAX = 255


def _random(n):
    try:
        return os.urandom(n)
    except (AttributeError, NotImplementedError):  # a port without os.urandom
        import random

        return bytes(random.getrandbits(8) for _ in range(n))


class Auth:
    """One watch's authentication state: the outstanding challenge and the trusted link."""

    def __init__(self, key):
        self._key = key
        self._nonce = None
        self._link = -1  # the connection that proved itself; -1: none
        self.failures = 0
        self._msg = bytearray(len(P.AUTH_LABEL) + 2 * P.NONCE_SIZE)

    def challenge(self, link):
        """A new nonce for connection `link`; any older challenge is void."""
        self._nonce = _random(P.NONCE_SIZE)
        self._nonce_link = link
        return self._nonce

    def prove(self, link, host_nonce, proof):
        """Check the host's answer; True makes `link` trusted until it drops."""
        nonce = self._nonce
        self._nonce = None  # one answer per challenge
        ok = (self._key and nonce is not None and self._nonce_link == link and len(host_nonce) == P.NONCE_SIZE
              and len(proof) == P.PROOF_SIZE
              and equal(hmac_sha256(self._key, P.auth_message(self._msg, nonce, host_nonce))[:P.PROOF_SIZE], proof))
        if ok:
            self._link = link
        elif self.failures < _FAILURES_MAX:
            self.failures += 1
        return bool(ok)

    def trusted(self, link):
        return link >= 0 and link == self._link
