"""Where a worker's time goes: a per-unit timeline and CPU seconds per stage, for
``worker_benchmark.py --trace``.

:func:`traced` wraps, on one :class:`~looking_glass.pipeline.worker.Worker` instance and the
worker module's helpers, the calls each stage makes, and records for every call its wall-clock
start and end (``time.perf_counter``, seconds from the worker's start) and the CPU time of the
thread that made it (``time.thread_time``). Nothing of the worker changes but these wrappers,
which cost microseconds per call. :meth:`Trace.report` prints:

- per unit (in the order the model took them): received, skip check done, first and last tile
  download, handed to the model, model start and end, areas/counts done, result object uploaded, items and ledger stored,
  message deleted (seconds from the start);
- the model's idle time before its first batch, between units and after its last;
- CPU seconds per stage and per tile (decode, HTTP download, model pre/post, building areas and
  counts, result-object encoding, AWS client-side overhead, item encoding);
- CPU seconds of other processes (moto, the tile server) over the same interval, from /proc.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its reaped children so far (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime


class Trace:
    """Calls recorded as (stage, unit or None, start, end, thread CPU seconds)."""

    def __init__(self):
        self.origin = time.perf_counter()
        self.calls: list[tuple[str, str | None, float, float, float]] = []
        self._lock = threading.Lock()
        self._unit = threading.local()

    def wrap(self, stage: str, fn, unit_of=None):
        """``fn`` recording each call as ``stage``; ``unit_of(*args)`` names the unit (else the
        unit the calling thread is working on, if any)."""

        def wrapper(*args, **kwargs):
            unit = unit_of(*args) if unit_of else getattr(self._unit, "id", None)
            previous = getattr(self._unit, "id", None)
            self._unit.id = unit
            cpu, start = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                end, cpu = time.perf_counter(), time.thread_time() - cpu
                self._unit.id = previous
                with self._lock:
                    self.calls.append((stage, unit, start - self.origin, end - self.origin, cpu))

        return wrapper

    def aws_hooks(self, *clients) -> None:
        """Record every AWS call of ``clients`` as ``aws:<Operation>`` (client-side CPU: building
        the request, signing, parsing the reply)."""

        def before(context, **_):
            context["lg_trace"] = (time.perf_counter(), time.thread_time())

        def after(model, context, **_):
            start, cpu = context.pop("lg_trace", (time.perf_counter(), time.thread_time()))
            with self._lock:
                self.calls.append((f"aws:{model.name}", getattr(self._unit, "id", None), start - self.origin,
                                   time.perf_counter() - self.origin, time.thread_time() - cpu))

        for client in clients:
            client.meta.events.register("before-call.*.*", before)
            client.meta.events.register("after-call.*.*", after)

    def report(self, tiles: int, others: dict[str, float]) -> str:
        """The timeline, the model's idle gaps and CPU per stage (see the module docstring)."""
        by_unit: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        cpu: dict[str, float] = defaultdict(float)
        count: dict[str, int] = defaultdict(int)
        for stage, unit, start, end, spent in self.calls:
            cpu[stage] += spent
            count[stage] += 1
            if unit is not None:
                by_unit[unit][stage].append((start, end))
        order = sorted(by_unit, key=lambda u: min((s for s, _ in by_unit[u].get("predict", [(1e9, 0)]))))

        def first(u, stage):
            spans = by_unit[u].get(stage)
            return f"{min(s for s, _ in spans):6.2f}" if spans else "     -"

        def last(u, stage):
            spans = by_unit[u].get(stage)
            return f"{max(e for _, e in spans):6.2f}" if spans else "     -"

        lines = ["    timeline (s from the worker's start): received, skip check, first and last tile "
                 "download, unit handed over, model start-end, results, object up, stored, deleted",
                 f"    {'unit':<20}{'recv':>6}{'skip':>7}{'tiles':>14}{'ready':>7}{'model':>14}{'result':>7}"
                 f"{'put':>7}{'store':>7}{'del':>7}"]
        for u in order:
            lines.append(f"    {u[-20:]:<20}{first(u, 'prefetch')}{last(u, 'skip_check')} {first(u, 'fetch_tile (HTTP+decode)')}-"
                         f"{last(u, 'fetch_tile (HTTP+decode)')} {last(u, 'prefetch')}"
                         f" {first(u, 'predict')}-{last(u, 'predict')} {last(u, 'unit_results')}"
                         f" {last(u, 'put_result')} {last(u, 'record_tiles')} {last(u, 'aws:DeleteMessage')}")
        fetches = sorted(((e - s), s) for st, _, s, e, _ in self.calls if st.startswith("fetch_tile"))
        if fetches:
            lines.append(f"    tile downloads: median {fetches[len(fetches) // 2][0]:.3f} s, slowest "
                         + ", ".join(f"{d:.2f} s (from {s:.2f})" for d, s in fetches[:-4:-1]))
        predicts = sorted((s, e) for st, _, s, e, _ in self.calls if st == "predict")
        if predicts:
            end_all = max(e for _, _, _, e, _ in self.calls)
            busy = sum(e - s for s, e in predicts)
            between = sum(max(0.0, s - e0) for (_, e0), (s, _) in zip(predicts, predicts[1:]))
            lines.append(f"    model busy {busy:.2f} s of {end_all:.2f} s; idle before its first batch "
                         f"{predicts[0][0]:.2f} s, between batches {between:.2f} s, after its last "
                         f"{end_all - predicts[-1][1]:.2f} s")
        lines.append("    CPU seconds by stage (thread CPU time; nested stages are included in outer ones):")
        for stage in sorted(cpu, key=lambda s: -cpu[s]):
            lines.append(f"      {stage:<28}{count[stage]:>6} calls {cpu[stage]:>7.2f} s  "
                         f"{cpu[stage] / tiles * 1000:>6.2f} ms per tile")
        for name, seconds in others.items():
            lines.append(f"      {name:<28}{'':>12} {seconds:>7.2f} s  {seconds / tiles * 1000:>6.2f} ms per tile")
        return "\n".join(lines)


def traced(worker, trace: Trace) -> None:
    """Wrap ``worker``'s stages (and the worker module's helpers) to record into ``trace``.
    The module helpers stay wrapped for the life of the process (a benchmark runs one worker)."""
    from looking_glass.imagery import xyz
    from looking_glass.pipeline import worker as worker_module
    from looking_glass.pipeline.workunits import parse_work_unit

    tile_unit: dict[tuple, str] = {}

    def unit_of_message(message, *_):
        try:
            unit = parse_work_unit(message["Body"])
        except Exception:  # noqa: BLE001 - a malformed message has no unit
            return None
        tile_unit.update((tuple(t), unit.unit_id) for t in unit.tiles())
        return unit.unit_id

    worker._prefetch = trace.wrap("prefetch", worker._prefetch, unit_of_message)
    worker.store.final_quadkeys = trace.wrap("skip_check", worker.store.final_quadkeys)
    worker._fetch_safe = trace.wrap("fetch_tile (HTTP+decode)", worker._fetch_safe,
                                    lambda tile, source: tile_unit.get(tuple(tile)))
    worker._infer = trace.wrap("infer (model+results)", worker._infer, lambda item: item.unit.unit_id)
    worker._predict = trace.wrap("predict", worker._predict)
    worker._unit_results = trace.wrap("unit_results", worker._unit_results, lambda item, *a: item.unit.unit_id)
    worker._put_result = trace.wrap("put_result", worker._put_result, lambda key, job, unit, *a: unit)
    worker._store = trace.wrap("store", worker._store, lambda inferred: inferred.item.unit.unit_id)
    worker.store.record_tiles = trace.wrap("record_tiles", worker.store.record_tiles)
    xyz.decode_tile = trace.wrap("decode", xyz.decode_tile, lambda *a: None)
    for name, stage in (("building_area_m2", "building_area"), ("tile_count", "building_count"),
                        ("encode_unit_result", "encode_object")):
        setattr(worker_module, name, trace.wrap(stage, getattr(worker_module, name)))
    trace.aws_hooks(worker.sqs, worker.s3, worker.store.ddb)
