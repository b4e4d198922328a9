"""``labbook watch``: the daemon that records runs as training code writes them.

Sources (watchdog observers, the NVML sampler) only say "look at this path" or
"here are GPU readings" and put that on one queue; a single consumer thread
debounces (:mod:`.debounce`, a pure state machine), ingests run directories
(:mod:`.ingest`: recognise, capture, tail) and follows their lifecycle
(:mod:`.lifecycle`). :func:`labbook.sources.watch.daemon.run_daemon` wires it together.
"""

from __future__ import annotations
