"""The drill's changing producers in a process of their own (``load.ChildProducers`` starts it).

Reads one JSON line from stdin, ``{"clients": [ProducerClient.spec(), ...]}``, runs those producers,
and writes to stdout, four times a second, one JSON line per producer with the acks it got since the
last line, its error count and last error, and when it started and stopped. A ``stop`` line on stdin,
or stdin closing (the drill went away), stops every producer as ``ProducerClient`` stops; the process
exits when they all have.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from guardian_dev.drill.load import ProducerClient, Recorder

FLUSH_S = 0.25


def run(spec: dict[str, Any], stdin: TextIO, stdout: TextIO) -> None:
    stop = threading.Event()
    clients = [ProducerClient.from_spec(s, Recorder(s["name"], "", "", "producer"), stop) for s in spec["clients"]]

    def read_stop() -> None:
        stdin.readline()   # "stop", or "" when the drill's end of the pipe closed
        stop.set()

    threading.Thread(target=read_stop, name="child-stop", daemon=True).start()
    for c in clients:
        c.start()
    sent = [0] * len(clients)

    def flush() -> None:
        for i, c in enumerate(clients):
            rec = c.rec
            n = len(rec.acks)
            stdout.write(json.dumps({"i": i, "acks": rec.acks[sent[i]:n], "errors": rec.errors,
                                     "last_error": rec.last_error, "started_at": rec.started_at,
                                     "stopped_at": rec.stopped_at}) + "\n")
            sent[i] = n
        stdout.flush()

    while any(c.is_alive() for c in clients):   # the flush after the last one stopped sends its last acks
        time.sleep(FLUSH_S)
        flush()


def main() -> int:
    run(json.loads(sys.stdin.readline()), sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
