"""A registration check that failed, as both agents' engines raise it while checking a request."""

from __future__ import annotations

from mipd.core.wire.codes import ReplyCode


class Denied(Exception):
    """A check failed: the reply code the RFC gives for it (as exabgp's ``Notify(code, subcode)``
    carries its RFC code), and the reason for the journal."""

    def __init__(self, code: ReplyCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
