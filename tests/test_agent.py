"""`vramguard agent`: discovery on the real /proc, one pass per interval for every process,
a tracker per process, exits, the cap, faults (vanishing, hung probe, full log directory,
permission denied) and bad flags. Children are real Python processes judged on RSS; NVML
only through tests/fake_nvml.py at the vendor boundary."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from children import children, marker, pattern
from fake_nvml import FakeGpu, FakeNvml
from vramguard import faults
from vramguard.agent.census import NodeReader, Request, host_memory
from vramguard.agent.discovery import Discovery, Selector, parse_cgroup, parse_stat
from vramguard.agent.fleet import Fleet, LogSettings
from vramguard.agent.loop import Agent
from vramguard.probes import NoSuchProcess
from vramguard.probes.drm import DrmProbe
from vramguard.probes.nvml import NvmlProbe
from vramguard.samplelog import SampleLogWriter, read_log
from vramguard.trend import DetectorConfig

FAST = DetectorConfig().scaled(30.0)  # the detector's 8 h scaled to 30 s
NO_DRM = DrmProbe(dev_root="/nonexistent")


@pytest.fixture
def inject() -> Iterator[Any]:
    yield faults.install
    faults.release_hangs()
    faults.install(None)


def reader(mark: str, nvml: FakeNvml | None = None, **selector: Any) -> NodeReader:
    chosen = Selector(re.compile(pattern(mark)), **selector) if mark else Selector()
    probe = NvmlProbe(library=nvml or FakeNvml(init_error=12), in_pid_namespace=lambda: False)
    return NodeReader(chosen, nvml=probe, drm=NO_DRM)


def vramguard(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vramguard", *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


# -- /proc -----------------------------------------------------------------------------------


def test_the_cgroup_names_the_unit_and_the_container() -> None:
    assert parse_cgroup("0::/system.slice/encoder@3.service\n") == (
        "/system.slice/encoder@3.service", "encoder@3.service", "")  # fmt: skip
    docker = "0::/system.slice/docker-" + "ab12" * 16 + ".scope\n"
    assert parse_cgroup(docker)[1:] == ("", "ab12ab12ab12")
    pod = ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/"
           "cri-containerd-" + "9f" * 32 + ".scope")  # fmt: skip
    assert parse_cgroup(pod)[1:] == ("", "9f9f9f9f9f9f")
    v1 = "12:memory:/docker/" + "c0" * 32 + "\n11:cpu:/docker/" + "c0" * 32
    assert parse_cgroup(v1) == ("/docker/" + "c0" * 32, "", "c0c0c0c0c0c0")
    assert parse_cgroup("0::/user.slice/user-1000.slice/session-4.scope") == (
        "/user.slice/user-1000.slice/session-4.scope", "session-4.scope", "")  # fmt: skip


def test_a_process_name_with_spaces_and_parentheses_is_read_whole() -> None:
    fields = " ".join(["S"] + [str(i) for i in range(1, 40)])
    assert parse_stat(f"42 (a) (b c) {fields}") == ("a) (b c", 6, 19)  # fields 9 and 22


def test_discovery_finds_the_matching_processes_and_names_them() -> None:
    mark = marker()
    with children(mark, 0, 0) as procs:
        found = Discovery(selector=Selector(re.compile(pattern(mark)))).find()
        assert sorted(p.pid for p in found) == sorted(p.pid for p in procs)
        assert {p.comm for p in found} == {Path(sys.executable).name[:15]}
        assert all(p.uid == os.getuid() and p.start_ticks > 0 for p in found)
        others = Selector(re.compile(pattern(mark)), uids=frozenset({os.getuid() + 1}))
        assert Discovery(selector=others).find() == []
        mine = Selector(re.compile(pattern(mark)), cgroup=found[0].cgroup or "/")
        assert len(Discovery(selector=mine).find()) == 2
        elsewhere = Selector(re.compile(pattern(mark)), cgroup="/no/such.slice")
        assert Discovery(selector=elsewhere).find() == []


# -- one pass: GPU probes once for every process ------------------------------------------


def test_one_pass_lists_each_gpu_once_whatever_the_number_of_processes() -> None:
    mark = marker()
    with children(mark, 0, 0, 0) as procs:
        a, b, _ = (p.pid for p in procs)
        gone = 2**22 + 17  # listed by NVML, not running: vanished between the two
        nvml = FakeNvml([
            FakeGpu(used=5 << 30, total=80 << 30, compute=[(a, 1 << 30), (gone, 1 << 20)],
                    graphics=[(a, 1 << 30)], encoder_pids=[a, a]),
            FakeGpu(used=3 << 30, total=80 << 30, compute=[(a, 2 << 30), (b, 512 << 20)]),
        ])  # fmt: skip
        node = reader("", nvml)  # no selector: every process holding GPU memory
        census = node.read(Request(frozenset(), 256))
        assert sorted(p.pid for p in census.chosen) == sorted([a, b])  # c holds none
        by_pid = {r.pid: r for r in census.readings.values()}
        assert by_pid[a].process_gpu_bytes == 3 << 30  # max of both lists, summed over GPUs
        assert by_pid[a].device_total_bytes == 160 << 30 and by_pid[a].encoder_sessions == 2
        assert by_pid[b].process_gpu_bytes == 512 << 20
        assert by_pid[b].device_total_bytes == 80 << 30  # only the device it uses
        assert by_pid[a].host_rss_bytes and by_pid[a].host_rss_bytes > 1 << 20
        lists = [call for call in nvml.calls if "RunningProcesses" in call]
        assert len(lists) == 2 * 2  # compute and graphics, per device, for all processes
        nvml.calls.clear()
        node.read(Request(frozenset(), 256))
        assert len([call for call in nvml.calls if "RunningProcesses" in call]) == 4
        node.close()


def test_a_gpu_lost_mid_run_is_said_once_and_host_memory_is_still_read() -> None:
    mark = marker()
    heard: list[tuple[str, str]] = []
    fleet = Fleet(FAST, on_fault=lambda kind, message: heard.append((kind, message)))
    with children(mark, 0) as procs:
        nvml = FakeNvml([FakeGpu(compute=[(procs[0].pid, 1 << 30)])])
        agent = run_agent(reader("", nvml), fleet, 2)
        nvml.fail("nvmlDeviceGetComputeRunningProcesses_v3", 15)  # NVML_ERROR_GPU_IS_LOST
        agent.run(5)
        (watched,) = fleet.watched.values()
        assert watched.info.pid == procs[0].pid and watched.last is not None
        assert watched.last.process_gpu_bytes is None and watched.last.host_rss_bytes
        agent.close()
    assert [kind for kind, _ in heard] == ["gpu"] and "GPU is lost" in heard[0][1]
    assert fleet.faults.faults["gpu"]["count"] == 3


def test_a_process_that_ends_before_its_reading_is_gone_not_an_error() -> None:
    mark = marker()
    with children(mark, 0) as procs:
        pid = procs[0].pid
        assert host_memory(pid, Path("/proc"))[0]["host_rss_bytes"] > 0
        procs[0].kill()
        procs[0].wait()
        with pytest.raises(NoSuchProcess):
            host_memory(pid, Path("/proc"))


# -- the fleet -------------------------------------------------------------------------------


def run_agent(node: NodeReader, fleet: Fleet, passes: int, cap: int = 256,
              time_limit_s: float = 5.0) -> Agent:  # fmt: skip
    agent = Agent(node, fleet, 0.05, cap, time_limit_s)
    agent.run(passes)
    return agent


def test_an_exited_process_gets_a_last_verdict_and_its_tracker_is_freed() -> None:
    mark = marker()
    events: list[dict[str, Any]] = []
    fleet = Fleet(FAST, on_event=events.append)
    with children(mark, 0, 0) as procs:
        stays, ends = procs[0].pid, procs[1].pid
        agent = Agent(reader(mark), fleet, 0.05, 256, 5.0)
        try:
            agent.run(10)
            assert sorted(w.info.pid for w in fleet.watched.values()) == sorted([stays, ends])
            procs[1].kill()
            procs[1].wait()
            agent.run(agent.passes + 1)
            assert [w.info.pid for w in fleet.watched.values()] == [stays]
            assert fleet.ended == 1
        finally:
            agent.close()
    exited = [e for e in events if e["event"] == "exited"]
    assert [(e["pid"], e["samples"]) for e in exited] == [(ends, 10)]
    assert exited[0]["metric"] == "host_rss_bytes" and exited[0]["verdict"] in (
        "stable", "insufficient-data")  # fmt: skip
    stopped = [e for e in events if e["event"] == "stopped"]
    assert [e["pid"] for e in stopped] == [stays]
    assert fleet.watched == {}  # every tracker freed at the end


def test_the_cap_bounds_the_trackers_and_counts_the_rest_once() -> None:
    mark = marker()
    heard: list[tuple[str, str]] = []
    fleet = Fleet(FAST, on_fault=lambda kind, message: heard.append((kind, message)))
    with children(mark, 0, 0, 0, 0) as procs:
        agent = run_agent(reader(mark), fleet, 3, cap=2)
        watched = sorted(w.info.pid for w in fleet.watched.values())
        assert len(watched) == 2 and fleet.over_cap == 2
        assert set(watched) < {p.pid for p in procs}
        agent.run(6)
        assert sorted(w.info.pid for w in fleet.watched.values()) == watched  # kept, not swapped
        agent.close()
    assert [kind for kind, _ in heard] == ["over-cap"]
    assert "2 process(es) over --max-processes" in heard[0][1]


def test_a_hung_probe_costs_its_passes_and_the_agent_goes_on(inject: Any) -> None:
    mark = marker()
    heard: list[str] = []
    fleet = Fleet(FAST, on_fault=lambda kind, message: heard.append(kind))
    with children(mark, 0) as procs:
        inject("probe-hang@2")
        agent = Agent(reader(mark), fleet, 0.05, 256, time_limit_s=0.3)
        try:
            agent.run(3)  # the second pass hangs: it and the third are skipped
            assert heard == ["probe"] and fleet.faults.faults["probe"]["count"] == 2
            faults.release_hangs()
            time.sleep(0.2)
            agent.run(6)
            watched = next(iter(fleet.watched.values()))
            assert watched.info.pid == procs[0].pid and len(watched.tracker.samples) >= 3
        finally:
            agent.close()


def test_a_full_log_directory_is_said_once_and_sampling_goes_on(
    tmp_path: Path, inject: Any
) -> None:
    mark = marker()
    heard: list[tuple[str, str]] = []
    logs = LogSettings(tmp_path, 10**6, 2, {"interval_s": 0.05})
    fleet = Fleet(FAST, logs=logs, on_fault=lambda kind, message: heard.append((kind, message)))
    with children(mark, 0, 0):
        inject("log@5+")  # the disk fills at the fifth line and stays full
        agent = run_agent(reader(mark), fleet, 8)
        assert all(len(w.tracker.samples) == 8 for w in fleet.watched.values())
        agent.close()
    assert [kind for kind, _ in heard] == ["log"] and "No space left" in heard[0][1]
    for path in tmp_path.glob("*.jsonl"):
        assert read_log(path).warnings == []  # cut back to whole lines: still readable


def test_the_log_of_each_process_rotates_by_size_and_analyze_reads_every_file(
    tmp_path: Path,
) -> None:
    mark = marker()
    logs = LogSettings(tmp_path, 4096, 2, {"interval_s": 0.05})
    fleet = Fleet(FAST, logs=logs)
    with children(mark, 20_000):
        run_agent(reader(mark), fleet, 120).close()
    files = sorted(tmp_path.iterdir())
    names = [f.name for f in files]
    assert len(files) == 3, names  # the live file and two rotated: `keep` bounds them
    assert all(re.fullmatch(r"python[\w.]*-\d+-\d+(\.[12])?\.jsonl", n) for n in names), names
    for path in files:
        assert path.stat().st_size < 4096 + 2048
        log = read_log(path)
        assert log.header["source"]["comm"] and log.samples
        done = vramguard("analyze", str(path), "--json")
        assert done.returncode in (0, 1), done.stderr
        assert json.loads(done.stdout)["samples"] == len(log.samples)
    live = next(f for f in files if re.search(r"-\d+\.jsonl$", f.name))
    assert read_log(live).result is not None  # the last verdict closes the live file


def test_a_log_folder_that_cannot_take_a_new_file_leaves_the_process_watched(
    tmp_path: Path,
) -> None:
    mark = marker()
    heard: list[str] = []
    folder = tmp_path / "logs"
    folder.mkdir()
    logs = LogSettings(folder, 10**6, 2, {})
    fleet = Fleet(FAST, logs=logs, on_fault=lambda kind, message: heard.append(message))
    with children(mark, 0):
        folder.rmdir()  # gone between the check at start and the first process
        run_agent(reader(mark), fleet, 3).close()
    assert len(heard) == 1 and "runs without a log" in heard[0]


def test_rotation_keeps_no_older_file_when_keep_is_zero(tmp_path: Path) -> None:
    log = SampleLogWriter(tmp_path / "enc-7-99.jsonl", max_bytes=4096, keep=0)
    for i in range(200):
        log.write({"t": float(i), "host_rss_bytes": 10**6 + i})
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["enc-7-99.jsonl"] and log.rotations > 0
    assert read_log(tmp_path / "enc-7-99.jsonl").samples


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--match", "(unclosed"), "--match '(unclosed': not a regular expression"),
        (("--user", "no-such-user-here"), "--user 'no-such-user-here': no such user"),
        (("--cgroup", "system.slice"), "--cgroup 'system.slice': give the cgroup's path"),
        (("--max-processes", "0"), "invalid number '0': use 1 to 100000"),
        (("--log-dir", "/no/such/folder"), "--log-dir /no/such/folder: no such folder"),
        (("--interval", "0s"), "must be greater than zero"),
        (("--log-dir", "/tmp", "--log-max-size", "1kB"), "--log-max-size must be at least 4kB"),
        (("--metrics-port", "70000"), "invalid port '70000'"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    done = vramguard("agent", "--count", "1", *args, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_the_command_finds_the_leak_prints_json_events_and_logs_each_process(
    tmp_path: Path,
) -> None:
    mark = marker()
    with children(mark, 200_000, 0) as procs:
        done = vramguard("agent", "--match", pattern(mark), "--interval", "0.1s", "--window",
                         "30s", "--count", "200", "--json", "--log-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 1, done.stderr  # a leak alert during a --count run
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {e["pid"] for e in events if e["event"] == "leak_alert"} == {procs[0].pid}
    verdicts = {e["pid"]: e["verdict"] for e in events if e["event"] == "stopped"}
    assert verdicts == {procs[0].pid: "leak", procs[1].pid: "stable"}
    assert "no GPU probe answers" in done.stderr
    leaky = next(tmp_path.glob(f"*-{procs[0].pid}-*.jsonl"))
    assert vramguard("analyze", str(leaky)).returncode == 1


needs_setpriv = pytest.mark.skipif(
    shutil.which("setpriv") is None or os.geteuid() != 0,
    reason="needs root and setpriv (util-linux) to drop capabilities",
)


@needs_setpriv
def test_permission_denied_on_another_users_process_is_named_once() -> None:
    mark = marker()
    target = subprocess.Popen(["setpriv", "--reuid", "65534", "--regid", "65534",
                               "--clear-groups", "sh", "-c", "sleep 300", mark])  # fmt: skip
    try:
        time.sleep(0.3)  # sh started (it runs as nobody)
        done = subprocess.run(
            ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m",
             "vramguard", "agent", "--match", pattern(mark), "--interval", "0.05s",
             "--count", "5", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        target.terminate()
        target.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    denied = [line for line in done.stderr.splitlines() if "permission denied" in line]
    assert len(denied) == 1, done.stderr
    assert f"pid {target.pid}" in denied[0] and "open_handles" in denied[0]
    assert "CAP_SYS_PTRACE" in denied[0]
    stopped = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["pid"] for e in stopped] == [target.pid]  # still watched, on what it can read
