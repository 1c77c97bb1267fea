"""Progress on stderr for long jobs: the compile as its own phase, then a bar with ETA over the job's real
units (facts, cells, prompts, edits, tokens, steps).

One :class:`Progress` object travels from the command line (``--no-progress``) through a study to the loop
that dispatches the work; analyses stay pure (they never see it). It draws only where it is on:

* ``Progress(False)`` never draws; ``Progress(True)`` always does; ``Progress()`` (``None``, the default)
  draws when stderr is a terminal, unless the environment sets ``FFNKV_PROGRESS=0`` (``1`` forces it on, e.g.
  under a pipe or in a test). In a multi-process run only process 0 draws.
* ``with progress.compiling(name):`` — the line ``compiling NAME… 12.3 s`` (ticking on a terminal), ended by
  the seconds XLA itself spent tracing, lowering and compiling (``jax.monitoring``'s compile events).
* ``progress.bar(total, desc, unit)`` — a tqdm bar with rate and ETA (a silent one when off).
* ``progress.chunks(items, desc, unit)`` — the work on the first item is the compile phase, then the bar.
* :func:`map_chunks` — a sweep cut into equal chunks dispatched from Python: the first chunk compiles the one
  program (its own phase), the bar advances per chunk, and the results are joined as if computed at once.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]  # running total of XLA compile seconds in this process (a listener adds to it)
_listening = []


def _listen() -> None:
    """Add the compile-duration listener to jax.monitoring once per process."""
    if not _listening:
        import jax.monitoring

        def on_event(event, duration, **_):
            if event in COMPILE_EVENTS:
                _compile_seconds[0] += duration

        jax.monitoring.register_event_duration_secs_listener(on_event)
        _listening.append(on_event)


def default_enabled() -> bool:
    """On when ``FFNKV_PROGRESS=1``, off when it is ``0``, else on exactly when stderr is a terminal."""
    forced = os.environ.get("FFNKV_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """Where a long job reports how far it is (module docstring); ``enabled`` None/True/False."""

    def __init__(self, enabled: bool | None = None):
        self.requested = enabled
        self._on = None

    @property
    def on(self) -> bool:
        if self._on is None:  # decided at first use, after jax.distributed is up (process 0 draws)
            on = default_enabled() if self.requested is None else bool(self.requested)
            if on:
                import jax

                on = jax.process_index() == 0
            self._on = on
        return self._on

    def write(self, line: str) -> None:
        """One status line on stderr (when on)."""
        if self.on:
            print(line, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def compiling(self, name: str):
        """The compile of ``name`` as its own phase: elapsed seconds while it runs, then the XLA compile share."""
        if not self.on:
            yield
            return
        _listen()
        tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        start, compiled = time.perf_counter(), _compile_seconds[0]
        done = threading.Event()

        def tick():
            while not done.wait(0.25):
                sys.stderr.write(f"\rcompiling {name}… {time.perf_counter() - start:.1f} s")
                sys.stderr.flush()

        ticker = threading.Thread(target=tick, daemon=True) if tty else None
        if ticker is None:
            sys.stderr.write(f"compiling {name}…\n")
        else:
            ticker.start()
        try:
            yield
        finally:
            done.set()
            if ticker is not None:
                ticker.join()
            wall, xla = time.perf_counter() - start, _compile_seconds[0] - compiled
            sys.stderr.write(f"{chr(13) if tty else ''}compiling {name}… {wall:.1f} s "
                             f"(XLA compile {xla:.1f} s, the rest the first run)\n")
            sys.stderr.flush()

    def bar(self, total: int, desc: str, unit: str = "it", initial: int = 0):
        """A tqdm bar on stderr over ``total`` ``unit``s (a silent one when off); use it as a context manager."""
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=not self.on,
                    dynamic_ncols=True, leave=True, mininterval=0.5, smoothing=0.1)

    def named(self, name: str) -> "Progress":
        """This progress with ``name`` as the description of the next job (for code that does not name it)."""
        out = Progress(self.requested)
        out._on, out.name = self._on, name
        return out

    name = "running"

    def chunks(self, items, desc: str | None = None, unit: str = "it", weight=None, total: int | None = None):
        """Yields ``items`` (chunks of one compiled program): the caller's work on the first is the compile
        phase, then a bar over ``total`` units (default: every item's weight) advances ``weight(item)`` units
        (default 1) after the work on each later one."""
        desc = self.name if desc is None else desc
        weight = (lambda item: 1) if weight is None else weight
        rest = iter(items)
        first = next(rest, _END)
        if first is _END:
            return
        if total is None:
            later = list(rest)
            total, rest = weight(first) + sum(weight(item) for item in later), iter(later)
        with self.compiling(desc):
            yield first
        with self.bar(total, desc, unit, initial=weight(first)) as bar:
            for item in rest:
                yield item
                bar.update(weight(item))


_END = object()
SILENT = Progress(False)


def chunk_rows(n: int, size: int, multiple: int = 1):
    """``range(n)`` cut into k equal chunks of at most ``size`` rows (a multiple of ``multiple``), the last one
    padded by repeating row n − 1: an int32 array [k, rows]. Padding is under k × ``multiple`` rows."""
    import numpy as np

    size = -(-max(1, int(size)) // multiple) * multiple
    k = -(-n // size)  # no chunk is padding alone: (k − 1) · rows ≤ (k − 1) · size < n
    rows = -(-(-(-n // k)) // multiple) * multiple
    return np.minimum(np.arange(k * rows), n - 1).reshape(k, rows).astype(np.int32)


def map_chunks(fn, n: int, size: int, progress: Progress | None = None, desc: str = "", unit: str = "items",
               per_row: int = 1, multiple: int = 1):
    """``fn(rows)`` over :func:`chunk_rows` of ``range(n)``, joined: ``fn`` returns a pytree whose leaves have a
    leading axis of ``len(rows)``; the result has ``n`` rows, as numpy. Every chunk has the same shape, so
    one program serves them all; the first call is the compile phase, then a bar advances ``per_row`` units
    per row (e.g. cells per fact). Nothing is synchronised per item, only per chunk."""
    import jax
    import numpy as np

    progress = SILENT if progress is None else progress
    chunks = chunk_rows(n, size, multiple)
    real = lambda rows: min(n, int(rows[0]) + len(rows)) - int(rows[0])
    outs = [jax.tree.map(np.asarray, fn(rows))
            for rows in progress.chunks(chunks, desc, unit, weight=lambda rows: real(rows) * per_row)]
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outs)
