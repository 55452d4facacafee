"""Every subcommand with wrong values: one clear line on stderr, exit 2, no traceback, and no
existing file overwritten without --force. (Run in this process: each is refused before any
work starts.)"""

from __future__ import annotations

import contextlib
import io
import stat
from pathlib import Path

import pytest

from vramguard.cli import main

DURATIONS = {"0s": "must be greater than zero", "-1s": "invalid duration '-1s'",
             "soon": "invalid duration 'soon'", "400d": "longer than a year",
             "": "invalid duration ''"}  # fmt: skip
SIZES = {"-1MB": "invalid size '-1MB'", "1XB": "invalid size '1XB'", "lots": "invalid size",
         "1e99": "invalid size '1e99'"}  # fmt: skip
RESOLUTIONS = {"1920x": "invalid resolution '1920x'", "0x0": "invalid resolution '0x0'",
               "321x241": "is odd", "99999x99999": "invalid resolution '99999x99999'",
               "-2x4": "invalid resolution '-2x4'", "hd": "invalid resolution 'hd'"}  # fmt: skip
COUNTS = {"0": "invalid number '0'", "-5": "invalid number '-5'", "abc": "invalid number 'abc'",
          "10000000000": "invalid number '10000000000'", "1.5": "invalid number '1.5'"}  # fmt: skip
LADDERS = {"2000,,5000": "invalid ladder", "abc": "invalid ladder 'abc'",
           "0,1000": "every rung must be 1 to", "-1": "every rung",
           ",": "invalid ladder"}  # fmt: skip
PORTS = {"70000": "invalid port '70000'", "-1": "invalid port '-1'", "http": "invalid port"}

DATA = Path(__file__).parent / "data"
SHORT = str(DATA / "logs" / "short.jsonl")
CASES: list[tuple[list[str], str]] = []


def matrix(
    command: list[str], option: str, table: dict[str, str], tail: tuple[str, ...] = ()
) -> None:
    for value, message in table.items():
        CASES.append(([*command, f"{option}={value}", *tail], message))


for duration_option in ("--duration", "--sample-interval", "--adapt-every", "--reconnect-every",
                        "--window", "--probe-time-limit"):  # fmt: skip
    matrix(["soak"], duration_option, DURATIONS)
matrix(["soak"], "--resolution", RESOLUTIONS)
for count_option in ("--bitrate", "--fps", "--max-sessions"):
    matrix(["soak"], count_option, COUNTS)
matrix(["soak"], "--bitrate-ladder", LADDERS)
for size_option in ("--max-peak", "--max-growth", "--staging-budget", "--reference-budget"):
    matrix(["soak"], size_option, SIZES)
matrix(["soak"], "--min-reuse", {"1.5": "invalid ratio '1.5'", "-0.1": "invalid ratio",
                                 "most": "invalid ratio 'most'"})  # fmt: skip
matrix(["soak"], "--metrics-port", PORTS)
CASES += [
    (["soak", "--codec", "vp9"], "invalid choice: 'vp9'"),
    (["soak", "--source", "smpte"], "invalid choice: 'smpte'"),
    (["soak", "--encoder-option", "preset"], "invalid encoder option 'preset'"),
    (["soak", "-x", "=fast"], "invalid encoder option '=fast'"),
    (["soak", "-x", "preset="], "invalid encoder option 'preset='"),
    (["soak", "--encoder", "h264_magic"], "h264_magic"),
    (["soak", "--codec", "hevc", "--encoder", "libx264"], "libx264"),
    (["soak", "--adapt-every", "30s"], "--adapt-every needs --bitrate-ladder"),
    (["soak", "--log", "a.jsonl", "--log-gpu-memory", "b.jsonl"], "not both"),
    (["soak", "--log", "/no/such/folder/x.jsonl"], "folder /no/such/folder does not exist"),
    (["soak", "--html", "/no/such/folder/x.html"], "folder /no/such/folder does not exist"),
    (["soak", "--metrics-host", "256.1.1.1", "--metrics-port", "0"], "cannot serve metrics"),
]

matrix(["churn"], "--resolution", RESOLUTIONS)
for count_option in ("--cycles", "--frames", "--bitrate"):
    matrix(["churn"], count_option, COUNTS)
CASES += [
    (["churn", "--cycles", "3"], "--cycles must be at least 4"),
    (["churn", "--codec", "mjpeg"], "invalid choice: 'mjpeg'"),
    (["churn", "--log", "/no/such/folder/x.jsonl"], "folder /no/such/folder does not exist"),
]

for duration_option in ("--interval", "--window", "--kill-after", "--probe-time-limit"):
    matrix(["run"], duration_option, DURATIONS, ("--", "true"))
matrix(["run"], "--budget", SIZES, ("--", "true"))
matrix(["run"], "--metrics-port", PORTS, ("--", "true"))
CASES += [
    (["run"], "run needs a command"),
    (["run", "--"], "run needs a command"),
    (["run", "--", "/definitely/not/here"], "command not found: /definitely/not/here"),
    (["run", "--", "/tmp"], "cannot execute /tmp: permission denied"),
    (["run", "--log", "/no/such/folder/x.jsonl", "--", "true"], "does not exist"),
]

for duration_option in ("--interval", "--window", "--probe-time-limit"):
    matrix(["watch", "--count", "1"], duration_option, DURATIONS)
matrix(["watch"], "--pid", {"0": "invalid pid '0'", "-1": "invalid pid '-1'",
                            "abc": "invalid pid 'abc'", "99999999999": "invalid pid"})  # fmt: skip
matrix(["watch"], "--count", {"0": "--count must be at least 1", "abc": "invalid"})
matrix(["watch"], "--budget", SIZES)
CASES += [(["watch", "--pid", "2147483000", "--count", "1"], "no process with pid 2147483000")]

matrix(["probe"], "--pid", {"0": "invalid pid '0'", "abc": "invalid pid 'abc'"})
CASES += [(["probe", "--pid", "2147483000"], "no process with pid 2147483000")]

for duration_option in ("--window",):
    matrix(["analyze", SHORT], duration_option, DURATIONS)
matrix(["analyze", SHORT], "--budget", SIZES)
CASES += [
    (["analyze"], "give a log FILE, or --prometheus URL --query PROMQL"),
    (["analyze", "/no/such/log.jsonl"], "no such file"),
    (["analyze", str(DATA)], "is a folder"),
    (["analyze", SHORT, "--metric", "gpu:7"], "has no metric 'gpu:7'"),
    (["analyze", SHORT, "--plot", "/no/such/p.png"], "does not exist"),
    (["analyze", SHORT, "--html", "/no/such/r.html"], "does not exist"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
]


def vramguard(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own --help/--version only
            code = int(exc.code or 0)
    return code, err.getvalue()


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str) -> None:
    code, err = vramguard(argv)
    assert code == 2, err
    assert err.startswith("vramguard: error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_the_matrix_covers_every_subcommand() -> None:
    assert {argv[0] for argv, _ in CASES if argv} == {
        "probe", "watch", "run", "analyze", "soak", "churn", "frobnicate",
    }  # fmt: skip
    assert len(CASES) > 150


OUTPUTS = [
    ("soak", ["soak", "--duration", "1s", "--log", "{path}"]),
    ("soak-plan", ["soak", "--duration", "1s", "--log-gpu-memory", "{path}"]),
    ("soak-html", ["soak", "--duration", "1s", "--html", "{path}"]),
    ("churn", ["churn", "--cycles", "4", "--log", "{path}"]),
    ("run", ["run", "--log", "{path}", "--", "true"]),
    ("watch", ["watch", "--count", "1", "--log", "{path}"]),
    ("analyze-plot", ["analyze", SHORT, "--plot", "{path}"]),
    ("analyze-html", ["analyze", SHORT, "--html", "{path}"]),
]


@pytest.mark.parametrize(("name", "argv"), OUTPUTS, ids=[n for n, _ in OUTPUTS])
def test_no_existing_file_is_overwritten_without_force(
    tmp_path: Path, name: str, argv: list[str]
) -> None:
    path = tmp_path / f"{name}.out"
    path.write_bytes(b"a day of samples\n")
    before = path.stat().st_mtime_ns
    code, err = vramguard([a.replace("{path}", str(path)) for a in argv])
    assert code == 2 and "exists: use --force to overwrite it" in err, err
    assert path.read_bytes() == b"a day of samples\n" and path.stat().st_mtime_ns == before


def test_a_command_without_execute_permission_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "server.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    code, err = vramguard(["run", "--", str(script)])
    assert code == 2 and f"cannot execute {script}: permission denied" in err, err
