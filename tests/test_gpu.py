"""GPU sampling, mapping GPU processes to runs, and per-run summaries.

There is no GPU on the machines that run these tests, so readings come from
:class:`ReplayBackend` or a stand-in for the ``pynvml`` module (the NVML boundary);
the processes, process trees and pid namespaces they are mapped to are real.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from labbook.capture.gpu import (
    GpuAccumulator,
    GpuProcess,
    GpuReading,
    GpuSample,
    LiveParents,
    NvmlBackend,
    ProcessTree,
    ReplayBackend,
    RunGpuSample,
    _nspid_map,
    attribute,
    covers,
    device_line,
    open_backend,
    sample_forever,
)

MIB = 1024 * 1024
#: Above any Linux pid_max (2**22): a pid that is never visible here, like a host
#: pid seen from inside a container.
HOST_PID = 2**22 + 17

GPU0 = GpuReading(0, "GPU-aaaa-0000", "NVIDIA H200", 90.0, 40_000.0, 143_771.0, 500.0, 60.0)
GPU1 = GpuReading(1, "GPU-bbbb-1111", "NVIDIA H200", 10.0, 1_000.0, 143_771.0, 100.0, 40.0)


# --- real processes --------------------------------------------------------------------

_TREE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],
                         stdin=subprocess.PIPE)
print(child.pid, flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


#: Children start without the test runner's own CUDA_VISIBLE_DEVICES.
_BASE_ENV = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, int]:
        """Start ``argv`` (which prints a pid, then waits on stdin): (its pid, printed pid)."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**_BASE_ENV, **(env or {})},
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip(), "the child started"
        return proc.pid, int(line)

    def tree(self, env: dict[str, str] | None = None) -> tuple[int, int]:
        """A training-like parent with one child: (parent pid, child pid)."""
        return self.start([sys.executable, "-c", _TREE], env)

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    yield p
    p.close()


# --- open_backend and NVML ------------------------------------------------------------------


def test_open_backend_here_gives_one_line_reason() -> None:
    backend, reason = open_backend()
    if backend is not None:  # a machine with a GPU
        backend.close()
        assert reason.startswith("GPU monitoring on: ")
        return
    assert reason.startswith("GPU monitoring off: ")
    assert "\n" not in reason and "Traceback" not in reason


class _Err(Exception):
    pass


def _fake_nvml(devices: int = 2, fail_init: Exception | None = None) -> Any:
    """A stand-in for the ``pynvml`` module with the calls NvmlBackend makes."""
    m = types.SimpleNamespace()
    m.NVML_TEMPERATURE_GPU = 0
    m.NVMLError = _Err
    m.NVMLError_LibraryNotFound = type("NVMLError_LibraryNotFound", (_Err,), {})
    m.NVMLError_DriverNotLoaded = type("NVMLError_DriverNotLoaded", (_Err,), {})
    m.NVMLError_NotSupported = type("NVMLError_NotSupported", (_Err,), {})
    m.shutdowns = 0

    def init() -> None:
        if fail_init is not None:
            raise fail_init

    def shutdown() -> None:
        m.shutdowns += 1

    def power(h: int) -> int:
        if h == 1:
            raise m.NVMLError_NotSupported("Not Supported")
        return 412_000

    def compute(h: int) -> list[Any]:
        used = 2**64 - 1 if h == 1 else 3 * 1024 * MIB  # NVML_VALUE_NOT_AVAILABLE on GPU 1
        return [types.SimpleNamespace(pid=1000 + h, usedGpuMemory=used)]

    def graphics(h: int) -> list[Any]:
        return [types.SimpleNamespace(pid=1000 + h, usedGpuMemory=None)]

    m.nvmlInit = init
    m.nvmlShutdown = shutdown
    m.nvmlDeviceGetCount = lambda: devices
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h:04d}".encode()
    m.nvmlDeviceGetName = lambda h: "NVIDIA H200"
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87 - h, memory=40)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=61_234 * MIB, total=143_771 * MIB, free=0
    )
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetTemperature = lambda h, kind: 63
    m.nvmlDeviceGetComputeRunningProcesses = compute
    m.nvmlDeviceGetGraphicsRunningProcesses = graphics
    return m


def _nvml_failing(error: str) -> Any:
    nvml = _fake_nvml()
    exc = getattr(nvml, error)("boom")

    def init() -> None:
        raise exc

    nvml.nvmlInit = init
    return nvml


def test_nvml_backend_reads_and_survives_unsupported_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = _fake_nvml()
    backend, reason = open_backend(nvml)
    assert isinstance(backend, NvmlBackend)
    assert reason == "GPU monitoring on: 2 GPUs (0: NVIDIA H200, 1: NVIDIA H200)"
    with caplog.at_level(logging.INFO, logger="labbook"):
        gpus, processes = backend.read()
        backend.read()
    assert gpus[0] == GpuReading(0, "GPU-0000", "NVIDIA H200", 87.0, 61234.0, 143771.0, 412.0, 63.0)
    assert gpus[1].power_w is None and gpus[1].util_pct == 86.0
    assert sorted(processes, key=lambda p: p.pid) == [
        GpuProcess(1000, 0, 3072.0),
        GpuProcess(1001, 1, None),
    ]
    assert sum("power" in r.message for r in caplog.records) == 1  # logged once
    backend.close()
    backend.close()
    assert nvml.shutdowns == 1


@pytest.mark.parametrize(
    ("nvml", "reason"),
    [
        (
            _nvml_failing("NVMLError_LibraryNotFound"),
            "GPU monitoring off: NVML not found (libnvidia-ml.so.1)",
        ),
        (
            _nvml_failing("NVMLError_DriverNotLoaded"),
            "GPU monitoring off: the NVIDIA driver is not loaded",
        ),
        (_fake_nvml(devices=0), "GPU monitoring off: no NVIDIA GPU found"),
        (
            _fake_nvml(fail_init=_Err("Unknown Error\nmore")),
            "GPU monitoring off: NVML failed to start (Unknown Error more)",
        ),
    ],
)
def test_open_backend_reasons(nvml: Any, reason: str) -> None:
    assert open_backend(nvml) == (None, reason)


def test_device_line() -> None:
    assert device_line(GPU0) == "0 NVIDIA H200  90%  40000/143771 MiB  500 W  60 C"
    assert device_line(GpuReading(3)) == "3 GPU  ?%"


# --- the sampling loop ------------------------------------------------------------------------


@pytest.mark.lenient  # the backend raises a RuntimeError on purpose: the sampler must go on
def test_sample_forever_with_fake_clock(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    waits: list[float] = []
    got: list[GpuSample] = []
    stop = threading.Event()
    backend = ReplayBackend()
    backend.push([GPU0])
    backend.push(RuntimeError("GPU has fallen off the bus"))
    backend.push(RuntimeError("GPU has fallen off the bus"))
    backend.push([GPU0, GPU1], [GpuProcess(7, 1, 10.0)])

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    def on_sample(sample: GpuSample) -> None:
        now[0] += 0.25  # a read that takes a while
        got.append(sample)
        if len(got) == 3:
            stop.set()

    with caplog.at_level(logging.WARNING, logger="labbook"):
        n = sample_forever(
            backend,
            2.0,
            stop=stop,
            on_sample=on_sample,
            clock=lambda: now[0],
            wall=lambda: 1_700_000_000.0 + now[0],
            wait=wait,
        )
    assert n == 3
    assert [len(s.gpus) for s in got] == [1, 2, 2]  # the last reading repeats
    assert got[1].processes == [GpuProcess(7, 1, 10.0)]
    assert got[0].time == 1_700_000_100.0
    # 2 s apart from the start of each read, whatever the read cost; none after stop
    assert waits == [1.75, 2.0, 2.0, 1.75]
    assert [r.getMessage() for r in caplog.records] == [
        "GPU sampling: RuntimeError: GPU has fallen off the bus"
    ]


def test_sample_forever_in_a_thread_stops_promptly() -> None:
    stop = threading.Event()
    backend = ReplayBackend([([GPU0], [])])
    got: list[GpuSample] = []

    def on_sample(sample: GpuSample) -> None:
        got.append(sample)
        if len(got) >= 5:
            stop.set()

    thread = threading.Thread(
        target=sample_forever, args=(backend, 0.001), kwargs={"stop": stop, "on_sample": on_sample}
    )
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(got) == 5

    # set before it starts: no read at all; a long interval is cut short by stop
    assert sample_forever(backend, 3600.0, stop=stop, on_sample=got.append) == 0
    stop2 = threading.Event()
    thread = threading.Thread(
        target=sample_forever,
        args=(backend, 3600.0),
        kwargs={"stop": stop2, "on_sample": lambda s: None},
    )
    thread.start()
    stop2.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


# --- mapping processes to runs ---------------------------------------------------------------


def test_gpu_process_counts_for_the_run_of_its_ancestor(procs: Procs) -> None:
    parent_a, child_a = procs.tree()
    parent_b, child_b = procs.tree()
    sample = GpuSample(
        time=10.0,
        gpus=[GPU0, GPU1],
        processes=[
            GpuProcess(child_a, 0, 30_000.0),  # run a's worker
            GpuProcess(parent_a, 0, 500.0),  # run a's main process too
            GpuProcess(child_b, 1, 900.0),
            GpuProcess(os.getpid(), 0, 7.0),  # visible, but in no run: not counted
        ],
    )
    runs = attribute(sample, {"a": parent_a, "b": parent_b})
    assert set(runs) == {"a", "b"}
    (use_a,) = runs["a"].devices
    assert use_a.reading == GPU0 and use_a.memory_mib == 30_500.0
    assert use_a.attribution == "process"
    (use_b,) = runs["b"].devices
    assert use_b.reading == GPU1 and use_b.memory_mib == 900.0
    # a run whose root is the child itself; runs that use no GPU get nothing
    assert set(attribute(sample, {"c": child_b, "d": psutil.Process(child_b).ppid()})) == {"c"}
    only_b = GpuSample(time=11.0, gpus=[GPU0, GPU1], processes=[GpuProcess(child_b, 1, 1.0)])
    assert set(attribute(only_b, {"a": parent_a, "b": parent_b})) == {"b"}
    assert attribute(sample, {}) == {}


def test_container_host_pids_fall_back_to_visible_devices(procs: Procs) -> None:
    """NVML's host pids are not visible: GPUs go to the runs whose devices cover them."""
    parent_a, _ = procs.tree({"CUDA_VISIBLE_DEVICES": "0"})
    parent_b, _ = procs.tree({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"})
    sample = GpuSample(
        time=10.0,
        gpus=[GPU0, GPU1],
        processes=[
            GpuProcess(HOST_PID, 0, 20_000.0),
            GpuProcess(HOST_PID + 1, 0, 1_000.0),
            GpuProcess(HOST_PID + 2, 1, 300.0),
        ],
    )
    runs = attribute(sample, {"a": parent_a, "b": parent_b})
    assert [(d.reading.index, d.memory_mib, d.attribution) for d in runs["a"].devices] == [
        (0, 21_000.0, "device")
    ]
    assert [(d.reading.index, d.memory_mib, d.attribution) for d in runs["b"].devices] == [
        (1, 300.0, "device")
    ]
    # a lone run without CUDA_VISIBLE_DEVICES gets every GPU whose processes are not
    # visible; one with CUDA_VISIBLE_DEVICES="" (CPU only) gets none
    parent_c, _ = procs.tree({"CUDA_VISIBLE_DEVICES": ""})
    parent_d, _ = procs.tree()
    only = attribute(sample, {"c": parent_c, "d": parent_d})
    assert list(only) == ["d"]
    assert [d.reading.index for d in only["d"].devices] == [0, 1]
    # memory NVML cannot give stays unknown rather than 0
    unknown = GpuSample(10.0, [GPU0], [GpuProcess(HOST_PID, 0, None)])
    assert attribute(unknown, {"a": parent_a})["a"].devices[0].memory_mib is None
    # a run that is not running (its root is gone) gets nothing
    assert attribute(sample, {"gone": HOST_PID + 5}) == {}


def test_nspid_maps_namespace_pids(procs: Procs) -> None:
    """A job in a nested pid namespace: its pids there are mapped through NSpid."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare")
    # pid 1 of the new namespace makes its next pid 30001, then runs the usual tree
    inner = "open('/proc/sys/kernel/ns_last_pid', 'w').write('30000')\n" + _TREE
    check = subprocess.run(
        [unshare, "-p", "-f", "--mount-proc", "true"], capture_output=True, timeout=30
    )
    if check.returncode != 0:
        pytest.skip("cannot create a pid namespace here")
    root_pid, inner_pid = procs.start(
        [unshare, "-p", "-f", "--mount-proc", sys.executable, "-c", inner]
    )
    assert inner_pid == 30001
    if psutil.pid_exists(inner_pid):
        pytest.skip("the namespace pid happens to be visible here too")
    outer = [p for p in psutil.Process(root_pid).children(recursive=True) if p.pid != inner_pid]
    mapping = _nspid_map(p.pid for p in outer)
    assert inner_pid in mapping
    assert mapping[inner_pid] in {p.pid for p in outer}

    sample = GpuSample(time=1.0, gpus=[GPU0], processes=[GpuProcess(inner_pid, 0, 4_096.0)])
    runs = attribute(sample, {"contained": root_pid})
    (use,) = runs["contained"].devices
    assert use.memory_mib == 4_096.0 and use.attribution == "process"


def test_live_parents(procs: Procs) -> None:
    parent, child = procs.tree()
    live = LiveParents()
    assert live[child] == parent and live[parent] == os.getpid()
    assert child in live and HOST_PID not in live and -1 not in live
    assert os.getpid() in set(live) and len(live) >= 3


def test_injected_process_tree() -> None:
    tree = ProcessTree(
        parents={10: 1, 11: 10, 12: 11, 20: 1},
        nspid=lambda pids: {},
        visible_devices=lambda pid: None,
    )
    sample = GpuSample(1.0, [GPU0], [GpuProcess(12, 0, 100.0), GpuProcess(20, 0, 5.0)])
    runs = attribute(sample, {"outer": 10, "inner": 11}, tree)
    assert set(runs) == {"inner"}  # the nearest root wins
    assert runs["inner"].devices[0].memory_mib == 100.0


@pytest.mark.parametrize(
    ("visible", "index", "expected"),
    [
        (None, 1, True),
        ("", 0, False),
        ("0", 0, True),
        ("1,0", 0, True),
        ("2", 0, False),
        ("-1,0", 0, False),  # CUDA stops at the first invalid entry
        ("GPU-aaaa", 0, True),
        ("GPU-bbbb", 0, False),
        ("GPU-bbbb,GPU-aaaa-0000", 0, True),
        ("nonsense,0", 0, False),
    ],
)
def test_covers(visible: str | None, index: int, expected: bool) -> None:
    reading = GPU0 if index == 0 else GPU1
    assert covers(visible, reading) is expected


# --- aggregation ------------------------------------------------------------------------------


def _run_sample(t: float, mem0: float, util0: float, mem1: float | None = None) -> RunGpuSample:
    from labbook.capture.gpu import DeviceUse

    devices = [DeviceUse(GpuReading(0, "GPU-a", "H200", util0, None, 80_000.0, 300.0, 50.0), mem0)]
    if mem1 is not None:
        devices.append(DeviceUse(GpuReading(1, "GPU-b", "H200", 50.0, None, 80_000.0), mem1))
    return RunGpuSample(time=t, devices=devices)


def test_accumulator_summary() -> None:
    acc = GpuAccumulator()
    assert acc.summary() is None
    acc.add(_run_sample(1.0, 1_000.0, 80.0, 500.0))
    acc.add(_run_sample(3.0, 3_000.0, 100.0, 200.0))
    acc.add(_run_sample(5.0, 2_000.0, math.nan))
    acc.add(RunGpuSample(time=7.0))  # a sample in which the run used no GPU
    s = acc.summary()
    assert s is not None
    json.dumps(s, allow_nan=False)
    assert s["peak_memory_mib"] == 3_200.0  # both GPUs at t=3
    assert s["mean_util_pct"] == pytest.approx((80 + 100 + 50 + 50) / 4, abs=0.05)
    assert s["names"] == ["H200", "H200"]
    assert s["samples"] == 3 and s["first_at"] == 1.0 and s["last_at"] == 5.0
    d0, d1 = s["devices"]
    assert d0 == {
        "index": 0,
        "uuid": "GPU-a",
        "name": "H200",
        "memory_total_mib": 80_000.0,
        "peak_memory_mib": 3_000.0,
        "mean_util_pct": 90.0,
        "mean_power_w": 300.0,
        "max_temperature_c": 50.0,
        "attribution": "process",
    }
    assert d1["peak_memory_mib"] == 500.0 and d1["mean_power_w"] is None
    series = acc.series()
    assert [p.value for p in series["gpu0/memory_mib"]] == [1_000.0, 3_000.0, 2_000.0]
    assert [p.wall_time for p in series["gpu0/util_pct"]] == [1.0, 3.0]
    assert acc.encoded_series()["gpu1/util_pct"] == [[0, 50.0, 1.0], [1, 50.0, 3.0]]


def test_accumulator_series_stay_bounded_and_keep_spikes() -> None:
    acc = GpuAccumulator()
    n = 7_000
    for i in range(n):
        mem = 80_000.0 if i == 4_321 else 1_000.0 + (i % 7)
        acc.add(_run_sample(float(i), mem, float(i % 100)))
    series = acc.series()
    mem = series["gpu0/memory_mib"]
    assert len(mem) <= 1000 and len(series["gpu0/util_pct"]) <= 1000
    assert max(p.value for p in mem) == 80_000.0
    assert mem[0].step == 0 and mem[-1].step == n - 1
    s = acc.summary()
    assert s is not None and s["peak_memory_mib"] == 80_000.0
    assert s["mean_util_pct"] == pytest.approx(49.5, abs=0.1)


def test_machine_wide_accumulator() -> None:
    acc = GpuAccumulator()
    acc.add(GpuSample(1.0, [GPU0, GPU1]))
    s = acc.summary()
    assert s is not None and s["peak_memory_mib"] == 41_000.0 and s["mean_util_pct"] == 50.0


def test_sampler_mapping_and_accumulation_end_to_end(procs: Procs) -> None:
    """What the daemon composes: sampler -> attribute -> one accumulator per run."""
    parent, child = procs.tree()
    backend = ReplayBackend()
    for mem in (1_000.0, 5_000.0, 2_500.0):
        backend.push([GPU0, GPU1], [GpuProcess(child, 1, mem), GpuProcess(HOST_PID, 0, 99.0)])
    stop = threading.Event()
    accs: dict[str, GpuAccumulator] = {}
    machine = GpuAccumulator()
    now = [0.0]

    def on_sample(sample: GpuSample) -> None:
        machine.add(sample)
        for run_id, share in attribute(sample, {"run": parent}).items():
            accs.setdefault(run_id, GpuAccumulator()).add(share)
        if machine.samples == 3:
            stop.set()

    def wait(seconds: float) -> None:
        now[0] += seconds

    sample_forever(
        backend,
        stop=stop,
        on_sample=on_sample,
        clock=lambda: now[0],
        wall=lambda: now[0],
        wait=wait,
    )
    s = accs["run"].summary()
    assert s is not None
    assert s["peak_memory_mib"] == 5_000.0
    assert s["mean_util_pct"] == 10.0  # GPU 1's
    assert [d["index"] for d in s["devices"]] == [1]
    assert [p.wall_time for p in accs["run"].series()["gpu1/memory_mib"]] == [0.0, 2.0, 4.0]


def test_import_is_light(tmp_path: Path) -> None:
    code = (
        "import sys, labbook.capture.gpu, labbook.capture.process\n"
        "heavy = [m for m in ('pynvml', 'psutil') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
