"""A stand-in daemon for the journal tests: emits Emit actions through mipd.obs as told on stdin.

Run as ``python obs_emitter.py INSTANCE ROLE [LEVEL]``. Each stdin line is one command, answered
with one ``ok ...`` line on stdout once done (so a test can act between commands):

    emit EVENT COUNT [PRIORITY]   COUNT Emit actions of EVENT (PRIORITY a number, default 6)
    level LEVEL                   mipd.obs.set_level(LEVEL)
    sleep SECONDS                 time.sleep(SECONDS)

Every event carries the journal's fields and also a ``key`` field, which must never get out.
End of input: exit 0.
"""

from __future__ import annotations

import sys
import time

from mipd.core.actions import Emit, Priority
from mipd.obs import configure, emit, set_level

KEY = "00112233445566778899aabbccddeeff"


def action(event: str, number: int, priority: Priority) -> Emit:
    return Emit(
        event=event,
        message=f"{event} number {number}",
        priority=priority,
        fields={
            "home_address": f"10.1.{number // 250}.{number % 250 + 1}",
            "care_of_address": "10.2.0.1",
            "foreign_agent": "10.2.0.1",
            "lifetime": 600,
            "spi": 256,
            "code": 0,
            "reason": "test",
            "key": KEY,
            "number": number,
        },
    )


def main() -> int:
    instance, role = sys.argv[1], sys.argv[2]
    configure(instance, role, sys.argv[3] if len(sys.argv) > 3 else "info")
    for line in sys.stdin:
        words = line.split()
        if words[0] == "emit":
            priority = Priority(int(words[3])) if len(words) > 3 else Priority.INFO
            for number in range(int(words[2])):
                emit(action(words[1], number, priority))
        elif words[0] == "level":
            set_level(words[1])
        elif words[0] == "sleep":
            time.sleep(float(words[1]))
        print("ok", *words, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
