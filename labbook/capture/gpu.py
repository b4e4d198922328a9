"""GPU readings: an NVML sampler, per-process GPU memory mapped to runs, per-run summaries.

Pieces, each usable alone:

* a **backend** reads the GPUs once: :class:`NvmlBackend` through ``pynvml``
  (from ``nvidia-ml-py``, imported lazily), or :class:`ReplayBackend`, which
  returns readings a test (or a replay of a recording) gives it.  :func:`open_backend`
  returns ``(backend, reason)``; with no library, no driver or no GPU the backend
  is None and ``reason`` is one line such as ``"GPU monitoring off: NVML not found
  (libnvidia-ml.so.1)"`` -- never a traceback, and everything else goes on.
* :func:`sample_forever` calls the backend every ``interval`` seconds until a
  ``threading.Event`` is set (clock and wait injectable for tests).
* :func:`attribute` splits one :class:`GpuSample` between runs, given each run's
  root pid, into :class:`RunGpuSample`\\ s.
* :class:`GpuAccumulator` folds a run's samples into the ``gpu`` object of the
  ``--json`` contract (peak memory, mean utilisation, devices) and bounded series.

Mapping GPU processes to runs
-----------------------------
NVML lists, per GPU, the processes using it and their memory
(``nvmlDeviceGetComputeRunningProcesses`` and ``…GraphicsRunningProcesses``).  A
GPU process belongs to the run whose root pid is the process itself or its
nearest ancestor (walking psutil parents; a DataLoader worker or a torchrun rank
counts for the run that launched it).  Parents are read once per sample.

Containers
----------
NVML reports pids of the *host's* pid namespace.  labbook inside a container sees
its own namespace's pids, so the reported pids are either absent here or, worse,
belong to unrelated processes.  The mapping therefore goes, per sample:

1. **Direct**: at least one reported pid is a visible process -> pids are taken as
   ours (labbook on the host, or a container sharing the host's pid namespace
   with ``--pid=host``).
2. **NSpid**: none is visible -> the ``NSpid:`` line of ``/proc/PID/status`` of
   every visible process is read; it lists the process's pid in each pid namespace
   from the one of that ``/proc`` down to its own.  Any reported pid found there is
   mapped to the visible pid.  This helps when labbook sees nested namespaces
   (labbook on the host or an outer container, the job in an inner one, and pids
   given in the inner namespace).  Inside a container, ``/proc`` is the
   container's and NSpid has one entry: the host pid cannot be learned this way.
3. **Per device**: what is still unmapped on a GPU is attributed to the live runs
   whose root process's ``CUDA_VISIBLE_DEVICES`` covers that GPU (integer indices
   or ``GPU-…`` UUIDs; unset means all GPUs, so a lone run without it gets every
   GPU; ``""`` means none, so a CPU-only run gets nothing).  Such usage is marked
   ``"attribution": "device"``: two runs sharing a GPU both see the GPU's unmapped
   memory, and so would another container's job on it -- an upper bound, not the
   run's own figure.  A run whose own processes were mapped on a GPU gets nothing
   more there.

Mapping reads only the ancestors of the reported processes (:class:`LiveParents`),
not the whole process table, so a sample costs a few reads per GPU process.
Drivers that list no processes at all inside a container give no per-run memory:
the per-GPU readings (utilisation, memory, power) are still recorded.

Devices are identified by NVML index and UUID.  NVML indices follow PCI bus order
while CUDA's default order is "fastest first"; with ``CUDA_DEVICE_ORDER`` unset
and mixed GPUs the two may differ, so UUIDs are preferred when a job uses them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from labbook.model import Point
from labbook.series import MAX_POINTS, downsample, encode_points
from labbook.warn import warn_exception

logger = logging.getLogger("labbook")

MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment.  A field NVML cannot give is None."""

    index: int
    uuid: str | None = None
    name: str | None = None
    util_pct: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    power_w: float | None = None
    temperature_c: float | None = None


@dataclass(frozen=True)
class GpuProcess:
    """A process using a GPU: its pid as NVML reports it and its memory there."""

    pid: int
    device_index: int
    memory_mib: float | None = None


@dataclass
class GpuSample:
    """All GPUs of the machine at ``time`` (epoch seconds)."""

    time: float
    gpus: list[GpuReading] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)


@dataclass(frozen=True)
class DeviceUse:
    """One GPU as used by one run: the run's memory there and the GPU's readings."""

    reading: GpuReading
    memory_mib: float | None
    attribution: str = "process"  # or "device" (see the module docstring)


@dataclass
class RunGpuSample:
    """A :class:`GpuSample` as seen by one run: only the GPUs it uses."""

    time: float
    devices: list[DeviceUse] = field(default_factory=list)


class GpuBackend(Protocol):
    """What :func:`sample_forever` needs from a source of readings."""

    def read(self) -> tuple[list[GpuReading], list[GpuProcess]]: ...

    def close(self) -> None: ...


# --- NVML ------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """Readings from NVML.  Construct through :func:`open_backend`.

    Every query is guarded: a GPU or a field that NVML cannot give (``NOT_SUPPORTED``
    on some boards, a GPU fallen off the bus) reads as None and is logged once,
    instead of stopping the sampler.
    """

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._handles: list[tuple[int, Any, str | None, str | None]] = []
        self._logged: set[str] = set()
        self._closed = False
        for i in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            uuid = self._get("uuid", nvml.nvmlDeviceGetUUID, handle)
            name = self._get("name", nvml.nvmlDeviceGetName, handle)
            uuid = _text(uuid) if uuid is not None else None
            name = _text(name) if name is not None else None
            self._handles.append((i, handle, uuid, name))

    @property
    def device_names(self) -> list[str]:
        return [name or f"GPU {i}" for i, _, _, name in self._handles]

    def _get(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None (logged once per ``what``) when NVML cannot give it."""
        try:
            return fn(*args)
        except Exception as exc:
            if what not in self._logged:
                self._logged.add(what)
                logger.info("NVML cannot give %s: %s", what, exc)
                what_failed = f"NVML cannot give {what}"
                warn_exception(None, what_failed, exc, expected=nvml_errors(self._nvml), quiet=True)
            return None

    def read(self) -> tuple[list[GpuReading], list[GpuProcess]]:
        nvml = self._nvml
        gpus: list[GpuReading] = []
        procs: dict[tuple[int, int], GpuProcess] = {}
        for i, h, uuid, name in self._handles:
            rates = self._get("utilization", nvml.nvmlDeviceGetUtilizationRates, h)
            util = getattr(rates, "gpu", None)
            mem = self._get("memory", nvml.nvmlDeviceGetMemoryInfo, h)
            power = self._get("power", nvml.nvmlDeviceGetPowerUsage, h)
            temp = self._get(
                "temperature", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU
            )
            gpus.append(
                GpuReading(
                    index=i,
                    uuid=uuid,
                    name=name,
                    util_pct=float(util) if util is not None else None,
                    memory_used_mib=mem.used / MIB if mem is not None else None,
                    memory_total_mib=mem.total / MIB if mem is not None else None,
                    power_w=power / 1000.0 if power is not None else None,
                    temperature_c=float(temp) if temp is not None else None,
                )
            )
            for fn_name in (
                "nvmlDeviceGetComputeRunningProcesses",
                "nvmlDeviceGetGraphicsRunningProcesses",
            ):
                fn = getattr(nvml, fn_name, None)
                if fn is None:
                    continue
                running = self._get(fn_name, fn, h) or []
                for p in running:
                    used = getattr(p, "usedGpuMemory", None)
                    # NVML_VALUE_NOT_AVAILABLE (unsigned -1) under some drivers/containers
                    mib = used / MIB if isinstance(used, int) and 0 <= used < 2**63 else None
                    key = (int(p.pid), i)
                    old = procs.get(key)
                    if old is None or (old.memory_mib is None and mib is not None):
                        procs[key] = GpuProcess(pid=int(p.pid), device_index=i, memory_mib=mib)
        return gpus, list(procs.values())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()


def nvml_errors(nvml: Any) -> tuple[type[BaseException], ...]:
    """The NVML module's own error class (``pynvml.NVMLError``): errors of the driver
    and the GPU, not of labbook. ``nvml`` may be a backend that keeps its module."""
    cls = getattr(getattr(nvml, "_nvml", nvml), "NVMLError", None)
    return (cls,) if isinstance(cls, type) and issubclass(cls, BaseException) else ()


def _nvml_reason(exc: BaseException, nvml: Any) -> str:
    """One line for why NVML could not start, from its error class."""
    checks = (
        ("NVMLError_LibraryNotFound", "NVML not found (libnvidia-ml.so.1)"),
        ("NVMLError_DriverNotLoaded", "the NVIDIA driver is not loaded"),
        ("NVMLError_NoPermission", "no permission to use NVML"),
        ("NVMLError_InsufficientPower", "a GPU is not powered"),
        ("NVMLError_LibRmVersionMismatch", "the NVIDIA driver and library versions differ"),
    )
    for cls_name, reason in checks:
        cls = getattr(nvml, cls_name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return reason
    return f"NVML failed to start ({' '.join(str(exc).split()) or type(exc).__name__})"


def open_backend(nvml: Any = None) -> tuple[NvmlBackend | None, str]:
    """An :class:`NvmlBackend`, or None, and one line saying whether GPU monitoring is on.

    ``nvml`` is the ``pynvml`` module (tests pass a stand-in; normally it is imported
    here, lazily, with its deprecation warnings silenced).
    """
    if nvml is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pynvml as nvml_module  # lazy: loads a C library
        except Exception as exc:  # not installed, or its C library cannot load
            warn_exception(None, "cannot import pynvml", exc, expected=(Exception,), quiet=True)
            return None, f"GPU monitoring off: nvidia-ml-py (pynvml) is not installed ({exc})"
        nvml = nvml_module
    try:
        nvml.nvmlInit()
    except Exception as exc:  # only NVML ran: whatever it raises is the machine's
        warn_exception(None, "nvmlInit failed", exc, expected=(Exception,), quiet=True)
        return None, f"GPU monitoring off: {_nvml_reason(exc, nvml)}"
    try:
        backend = NvmlBackend(nvml)
    except Exception as exc:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        warn_exception(None, "NVML failed to start", exc, expected=nvml_errors(nvml), quiet=True)
        return None, f"GPU monitoring off: {_nvml_reason(exc, nvml)}"
    names = backend.device_names
    if not names:
        backend.close()
        return None, "GPU monitoring off: no NVIDIA GPU found"
    shown = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
    return backend, f"GPU monitoring on: {len(names)} GPU{'s' if len(names) > 1 else ''} ({shown})"


class ReplayBackend:
    """A backend that returns readings given to it: for tests and for replays.

    ``push()`` queues one reading; ``read()`` returns the next queued one, or the last
    one again when the queue is empty (a steady GPU).  An exception pushed instead is
    raised by ``read()``, to test how the sampler survives a failing read.
    """

    def __init__(self, readings: Iterable[tuple[list[GpuReading], list[GpuProcess]]] = ()) -> None:
        self._queue: deque[tuple[list[GpuReading], list[GpuProcess]] | BaseException] = deque(
            readings
        )
        self._last: tuple[list[GpuReading], list[GpuProcess]] = ([], [])
        self.reads = 0
        self.closed = False

    def push(
        self,
        gpus: Sequence[GpuReading] | BaseException,
        processes: Sequence[GpuProcess] = (),
    ) -> None:
        if isinstance(gpus, BaseException):
            self._queue.append(gpus)
        else:
            self._queue.append((list(gpus), list(processes)))

    def read(self) -> tuple[list[GpuReading], list[GpuProcess]]:
        self.reads += 1
        if self._queue:
            item = self._queue.popleft()
            if isinstance(item, BaseException):
                raise item
            self._last = item
        return list(self._last[0]), list(self._last[1])

    def close(self) -> None:
        self.closed = True


# --- the loop ------------------------------------------------------------------------------


def sample_forever(
    backend: GpuBackend,
    interval: float = 2.0,
    *,
    stop: threading.Event,
    on_sample: Callable[[GpuSample], None],
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    wait: Callable[[float], object] | None = None,
) -> int:
    """Read ``backend`` every ``interval`` seconds and pass each sample to ``on_sample``.

    Runs until ``stop`` is set (checked before every read), so a daemon thread can
    run it and stop it at once.  Samples are spaced from the start of the previous
    read, so a slow read does not make the period drift.  A failing read or
    callback is logged once per distinct message and the loop goes on: a GPU that
    falls off the bus must not end the daemon.  ``clock`` (monotonic), ``wall``
    (the sample's epoch time) and ``wait`` (defaults to ``stop.wait``) are injected
    by tests.  Returns the number of samples delivered.
    """
    do_wait = wait if wait is not None else stop.wait
    seen_errors: set[str] = set()
    delivered = 0
    while not stop.is_set():
        started = clock()
        try:
            gpus, procs = backend.read()
            sample = GpuSample(time=wall(), gpus=gpus, processes=procs)
            on_sample(sample)
            delivered += 1
        except Exception as exc:
            msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            if msg not in seen_errors:
                seen_errors.add(msg)
                logger.warning("GPU sampling: %s", msg)
                warn_exception(None, "GPU sampling", exc, expected=nvml_errors(backend), quiet=True)
        if stop.is_set():
            break
        do_wait(max(0.0, started + interval - clock()))
    return delivered


# --- mapping to runs -------------------------------------------------------------------------


def _read_ppid(pid: int) -> int | None:
    """The parent of ``pid``; None when it is gone (or a zombie being reaped)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return int(fh.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    import psutil  # lazy: no /proc (macOS)

    try:
        return int(psutil.Process(pid).ppid())
    except (psutil.Error, OSError):
        return None


class LiveParents(Mapping[int, int]):
    """pid -> ppid, read from the live system on demand and remembered for one sample.

    Mapping a few GPU processes needs only their ancestors (a handful of reads),
    not the whole process table: reading every process every two seconds would cost
    more than the rest of the idle daemon.  Iterating lists every visible pid (only
    the NSpid fallback does that).
    """

    def __init__(self) -> None:
        self._known: dict[int, int | None] = {}

    def __getitem__(self, pid: int) -> int:
        if pid not in self._known:
            self._known[pid] = _read_ppid(pid) if isinstance(pid, int) and pid > 0 else None
        ppid = self._known[pid]
        if ppid is None:
            raise KeyError(pid)
        return ppid

    def __iter__(self) -> Iterator[int]:
        if os.path.isdir("/proc/self"):
            return iter(sorted(int(n) for n in os.listdir("/proc") if n.isdigit()))
        import psutil  # lazy

        return iter(psutil.pids())

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _nspid_map(pids: Iterable[int]) -> dict[int, int]:
    """Namespace pid -> our pid, from the ``NSpid:`` lines of /proc/PID/status."""
    mapping: dict[int, int] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"NSpid:"):
                        for other in line.split()[2:]:
                            mapping.setdefault(int(other), pid)
                        break
        except (OSError, ValueError):
            continue
    return mapping


def _visible_devices(pid: int) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` of a process (None when unset or unreadable)."""
    import psutil  # lazy

    try:
        return psutil.Process(pid).environ().get("CUDA_VISIBLE_DEVICES")
    except (psutil.Error, OSError):
        return None


def covers(visible: str | None, reading: GpuReading) -> bool:
    """Whether a ``CUDA_VISIBLE_DEVICES`` value lets a process use this GPU.

    Unset means all GPUs; integer indices and ``GPU-…``/``MIG-…`` UUIDs (or unique
    prefixes of them) are understood; CUDA stops at the first invalid entry.
    """
    if visible is None:
        return True
    for part in (p.strip() for p in visible.split(",")):
        if not part:
            return False
        if part.lstrip("-").isdigit():
            if int(part) < 0:
                return False
            if int(part) == reading.index:
                return True
        elif reading.uuid and reading.uuid.lower().startswith(part.lower()):
            return True
        elif not part.upper().startswith(("GPU-", "MIG-")):
            return False
    return False


@dataclass
class ProcessTree:
    """What :func:`attribute` reads about processes (injectable for tests).

    Build a new one per sample: it remembers what it read.
    """

    parents: Mapping[int, int]
    nspid: Callable[[Iterable[int]], dict[int, int]] = _nspid_map
    visible_devices: Callable[[int], str | None] = _visible_devices

    @classmethod
    def snapshot(cls) -> ProcessTree:
        """The live system, read lazily (see :class:`LiveParents`)."""
        return cls(parents=LiveParents())


def attribute(
    sample: GpuSample,
    roots: Mapping[str, int],
    tree: ProcessTree | None = None,
) -> dict[str, RunGpuSample]:
    """Split one machine-wide sample between runs, given ``{run_id: root pid}``.

    See the module docstring for the three ways a GPU process is matched (direct,
    NSpid, per device).  Runs that use no GPU in this sample get no entry.
    """
    if not roots:
        return {}
    tree = tree if tree is not None else ProcessTree.snapshot()
    parents = tree.parents
    root_of = {int(pid): run_id for run_id, pid in roots.items()}
    by_index = {g.index: g for g in sample.gpus}

    def run_for(pid: int) -> str | None:
        seen: set[int] = set()
        p: int | None = pid
        while p and p not in seen:
            if p in root_of:
                return root_of[p]
            seen.add(p)
            p = parents.get(p)
        return None

    reported = {p.pid for p in sample.processes}
    translate: dict[int, int] = {}
    # Direct when some reported pid is visible: the others have just exited.
    direct = any(pid in parents for pid in reported)
    if reported and not direct:
        translate = tree.nspid(parents.keys())
    memory: dict[str, dict[int, float | None]] = {}
    unmapped: dict[int, float | None] = {}
    for proc in sample.processes:
        pid = proc.pid if proc.pid in parents else translate.get(proc.pid)
        run_id = run_for(pid) if pid is not None else None
        if pid is None and not direct:
            unmapped[proc.device_index] = _add(unmapped.get(proc.device_index), proc.memory_mib)
        if run_id is None:
            continue
        per_dev = memory.setdefault(run_id, {})
        per_dev[proc.device_index] = _add(per_dev.get(proc.device_index), proc.memory_mib)

    out: dict[str, RunGpuSample] = {}
    for run_id, per_dev in memory.items():
        devices = [
            DeviceUse(by_index[i], mib) for i, mib in sorted(per_dev.items()) if i in by_index
        ]
        out[run_id] = RunGpuSample(time=sample.time, devices=devices)
    if unmapped:
        alive = {run_id: pid for run_id, pid in roots.items() if int(pid) in parents}
        for index, mib in sorted(unmapped.items()):
            reading = by_index.get(index)
            if reading is None:
                continue
            users = [r for r, pid in alive.items() if covers(tree.visible_devices(pid), reading)]
            for run_id in users:
                run_sample = out.setdefault(run_id, RunGpuSample(time=sample.time))
                if any(d.reading.index == index for d in run_sample.devices):
                    continue  # its own processes there are known: the rest is not its
                run_sample.devices.append(DeviceUse(reading, mib, attribution="device"))
    return out


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


# --- per-run aggregation ------------------------------------------------------------------


class _Series:
    """An append-only series kept under ``2 * limit`` points by repeated downsampling.

    :func:`labbook.series.downsample` keeps first, last, min and max, so compacting
    again and again keeps the curve's shape while memory stays bounded over a
    week-long run.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.points: list[Point] = []

    def add(self, step: int, value: float, wall: float) -> None:
        self.points.append(Point(step, value, wall))
        if len(self.points) >= 2 * self.limit:
            self.points = downsample(self.points, self.limit)

    def final(self) -> list[Point]:
        return downsample(self.points, self.limit)


@dataclass
class _Device:
    index: int
    uuid: str | None = None
    name: str | None = None
    memory_total_mib: float | None = None
    peak_memory_mib: float | None = None
    util_sum: float = 0.0
    util_n: int = 0
    power_sum: float = 0.0
    power_n: int = 0
    max_temperature_c: float | None = None
    attribution: str = "process"


def _finite(v: float | None) -> bool:
    return v is not None and not math.isnan(v) and not math.isinf(v)


def _round(v: float | None, digits: int = 1) -> float | None:
    return round(v, digits) if v is not None else None


class GpuAccumulator:
    """Folds one run's GPU samples into its summary and bounded series.

    ``add()`` takes a :class:`RunGpuSample` (one run's share, from :func:`attribute`)
    or a whole :class:`GpuSample` (then every GPU counts, with its total memory used:
    the machine's view, as the live pane's per-GPU lines show).  ``summary()`` is the
    ``gpu`` object of the ``--json`` contract; ``series()`` gives, per GPU,
    ``gpu{index}/util_pct`` and ``gpu{index}/memory_mib`` as at most
    :data:`labbook.series.MAX_POINTS` points each (step = sample number, wall time =
    sample time) for the daemon to store.
    """

    def __init__(self, limit: int = MAX_POINTS) -> None:
        self.limit = limit
        self.samples = 0
        self.peak_memory_mib: float | None = None
        self._devices: dict[int, _Device] = {}
        self._series: dict[str, _Series] = {}
        self.first_time: float | None = None
        self.last_time: float | None = None

    def _series_for(self, tag: str) -> _Series:
        s = self._series.get(tag)
        if s is None:
            s = self._series[tag] = _Series(self.limit)
        return s

    def add(self, sample: RunGpuSample | GpuSample) -> None:
        if isinstance(sample, GpuSample):
            uses = [DeviceUse(g, g.memory_used_mib) for g in sample.gpus]
        else:
            uses = list(sample.devices)
        if not uses:
            return
        step = self.samples
        self.samples += 1
        if self.first_time is None:
            self.first_time = sample.time
        self.last_time = sample.time
        total: float | None = None
        for use in uses:
            r = use.reading
            dev = self._devices.get(r.index)
            if dev is None:
                dev = self._devices[r.index] = _Device(r.index)
            dev.uuid = r.uuid or dev.uuid
            dev.name = r.name or dev.name
            dev.memory_total_mib = r.memory_total_mib or dev.memory_total_mib
            if use.attribution != "process":
                dev.attribution = use.attribution
            mem = use.memory_mib
            if _finite(mem):
                assert mem is not None
                total = _add(total, mem)
                if dev.peak_memory_mib is None or mem > dev.peak_memory_mib:
                    dev.peak_memory_mib = mem
                self._series_for(f"gpu{r.index}/memory_mib").add(step, mem, sample.time)
            if _finite(r.util_pct):
                assert r.util_pct is not None
                dev.util_sum += r.util_pct
                dev.util_n += 1
                self._series_for(f"gpu{r.index}/util_pct").add(step, r.util_pct, sample.time)
            if _finite(r.power_w):
                assert r.power_w is not None
                dev.power_sum += r.power_w
                dev.power_n += 1
            if _finite(r.temperature_c) and (
                dev.max_temperature_c is None
                or (r.temperature_c is not None and r.temperature_c > dev.max_temperature_c)
            ):
                dev.max_temperature_c = r.temperature_c
        if total is not None and (self.peak_memory_mib is None or total > self.peak_memory_mib):
            self.peak_memory_mib = total

    @property
    def names(self) -> list[str]:
        """The GPU names this run used, in index order."""
        return [d.name or f"GPU {d.index}" for _, d in sorted(self._devices.items())]

    def summary(self) -> dict[str, Any] | None:
        """The ``gpu`` object of ``labbook show --json``; None when no GPU was seen.

        ``peak_memory_mib`` is the largest total over the run's GPUs at one moment;
        ``mean_util_pct`` the mean of its GPUs' utilisation over all samples.  Each
        device says whether its memory is the run's own processes' (``"process"``)
        or the GPU's unattributed use (``"device"``, see the module docstring).
        """
        if not self._devices:
            return None
        util_sum = sum(d.util_sum for d in self._devices.values())
        util_n = sum(d.util_n for d in self._devices.values())
        devices = []
        for _, d in sorted(self._devices.items()):
            devices.append(
                {
                    "index": d.index,
                    "uuid": d.uuid,
                    "name": d.name,
                    "memory_total_mib": _round(d.memory_total_mib),
                    "peak_memory_mib": _round(d.peak_memory_mib),
                    "mean_util_pct": _round(d.util_sum / d.util_n) if d.util_n else None,
                    "mean_power_w": _round(d.power_sum / d.power_n) if d.power_n else None,
                    "max_temperature_c": _round(d.max_temperature_c),
                    "attribution": d.attribution,
                }
            )
        return {
            "peak_memory_mib": _round(self.peak_memory_mib),
            "mean_util_pct": _round(util_sum / util_n) if util_n else None,
            "devices": devices,
            "names": self.names,
            "samples": self.samples,
            "first_at": self.first_time,
            "last_at": self.last_time,
        }

    def series(self) -> dict[str, list[Point]]:
        """Per-GPU utilisation and memory series, each at most ``limit`` points."""
        return {tag: s.final() for tag, s in sorted(self._series.items())}

    def encoded_series(self) -> dict[str, list[list[object]]]:
        """:meth:`series` as JSON-safe ``[step, value, wall_time]`` rows."""
        return {tag: encode_points(points) for tag, points in self.series().items()}


def device_line(reading: GpuReading) -> str:
    """One line per GPU for the live pane: ``0 NVIDIA H200  87%  61234/143771 MiB  412 W  63 C``."""
    parts = [f"{reading.index} {reading.name or 'GPU'}"]
    parts.append(f"{reading.util_pct:.0f}%" if reading.util_pct is not None else "?%")
    if reading.memory_used_mib is not None and reading.memory_total_mib is not None:
        parts.append(f"{reading.memory_used_mib:.0f}/{reading.memory_total_mib:.0f} MiB")
    if reading.power_w is not None:
        parts.append(f"{reading.power_w:.0f} W")
    if reading.temperature_c is not None:
        parts.append(f"{reading.temperature_c:.0f} C")
    return "  ".join(parts)
