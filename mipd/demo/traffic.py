"""The correspondent's traffic, as the helpers of :mod:`mipd.demo.agents` report it.

Pings: every echo sent (``S seq time``) and every reply from the address pinged (``R seq time``), so for
any stretch of time the demo knows what was sent, what was answered and when the first answer to an echo
sent after a given moment came back; a reply from another address (``W seq source time``) is no answer
and is kept apart. TCP: the server (in the node's namespace on the home address, or on the vehicle LAN's
host) reports its peer's address as it sees it, the bytes it has received and whether its one connection
ended; the client reports if its connection failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mipd.demo.processes import Child


@dataclass
class Pings:
    """Echoes sent and answered: ``sent[seq]`` and ``answered[seq]`` are times (seconds)."""

    sent: dict[int, float] = field(default_factory=dict)
    answered: dict[int, float] = field(default_factory=dict)
    wrong_source: dict[int, str] = field(default_factory=dict)  # seq -> the address a reply came from

    @classmethod
    def parse(cls, child: Child) -> Pings:
        pings = cls()
        for _, line in child.snapshot():
            words = line.split()
            if len(words) == 3 and words[0] in ("S", "R") and words[1].isdigit():
                target = pings.sent if words[0] == "S" else pings.answered
                target.setdefault(int(words[1]), float(words[2]))
            elif len(words) == 4 and words[0] == "W" and words[1].isdigit():
                pings.wrong_source.setdefault(int(words[1]), words[2])
        return pings

    def first_answer_after(self, moment: float) -> float | None:
        """When the first reply to an echo sent after ``moment`` came in (the new path works)."""
        times = [self.answered[seq] for seq, sent in self.sent.items() if sent >= moment and seq in self.answered]
        return min(times) if times else None

    def between(self, start: float, end: float) -> tuple[int, int]:
        """``(sent, answered)`` for the echoes sent in ``[start, end)``."""
        seqs = [seq for seq, sent in self.sent.items() if start <= sent < end]
        return len(seqs), sum(1 for seq in seqs if seq in self.answered)


@dataclass
class Tcp:
    """The one TCP connection: when it was accepted, data arrivals ``(time, total bytes)``, its end."""

    accepted: float | None = None
    data: list[tuple[float, int]] = field(default_factory=list)
    ended: str | None = None
    peer: str | None = None  # the client's address as the server saw it

    def survived(self, moves_at: list[float], end: float) -> bool:
        """Open to the end and delivering in every window between consecutive moves (the last until
        ``end``)."""
        windows = zip(moves_at, [*moves_at[1:], end], strict=True)
        return (self.accepted is not None and self.ended is None
                and all(any(a < when <= b for when, _ in self.data) for a, b in windows))

    @classmethod
    def parse(cls, server: Child, client: Child) -> Tcp:
        tcp = cls()
        for _, line in server.snapshot():
            words = line.split()
            if words[:1] == ["A"]:
                tcp.accepted = float(words[-1])
                tcp.peer = words[1] if len(words) == 3 else None
            elif words[:1] == ["D"] and len(words) == 3:
                tcp.data.append((float(words[2]), int(words[1])))
            elif words[:1] == ["E"]:
                tcp.ended = f"server: {words[1]}"
        for _, line in client.snapshot():
            words = line.split()
            if words[:1] == ["E"] and tcp.ended is None:
                tcp.ended = f"client: {words[1]}"
        return tcp

    def delivered_after(self, moment: float) -> bool:
        return any(when > moment for when, _ in self.data)

    def bytes_total(self) -> int:
        return self.data[-1][1] if self.data else 0
