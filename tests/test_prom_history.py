"""`analyze --prometheus` against a real Prometheus: a week of one-minute history written into
a TSDB with `promtool tsdb create-blocks-from openmetrics`, served on 127.0.0.1 behind basic
auth, and every way a range query fails."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vramguard.cli import main
from vramguard.promhistory import PrometheusError, RangeQuery, read_range

MiB = 2**20
WEEK_MINUTES = 7 * 1440
USER, PASSWORD = "operator", "secret-18"
#: bcrypt of PASSWORD (cost 4): Prometheus's web config keeps only the hash
PASSWORD_HASH = "$2b$04$BT7BYIXes5Z4mVB4YJEpGOIrM1QKFfqqmBRtqSd2CTECJL56jkTEy"
LEAKING = 'DCGM_FI_DEV_FB_USED{Hostname="enc-b",gpu="1"}'

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus/promtool not installed (apt-get install prometheus; .ci/run does)",
)


def week_of_history(end_s: int) -> tuple[str, int]:
    """OpenMetrics text: dcgm-exporter's framebuffer gauge (MiB) for four GPUs over a week at
    one sample a minute (flat, a sawtooth, one level step, and one leaking 20 MB/h from day
    three), plus a day of two unit-less and two bytes series. Returns the text and the start."""
    rng = np.random.default_rng(18)
    minute = np.arange(WEEK_MINUTES)
    start = end_s - (WEEK_MINUTES - 1) * 60
    times = start + 60 * minute
    leak = 5000 + np.where(minute > 3 * 1440, (minute - 3 * 1440) / 60 * 20e6 / MiB, 0.0)
    gpus = {
        'Hostname="enc-a",gpu="0"': 2000 + rng.normal(0, 3, WEEK_MINUTES),
        'Hostname="enc-a",gpu="1"': 3000 + (minute % 30) * 1.3 + rng.normal(0, 2, WEEK_MINUTES),
        'Hostname="enc-b",gpu="0"': 4000 + np.where(minute > 2000, 200, 0)
        + rng.normal(0, 3, WEEK_MINUTES),
        'Hostname="enc-b",gpu="1"': leak + rng.normal(0, 3, WEEK_MINUTES),
    }  # fmt: skip
    lines = ["# TYPE DCGM_FI_DEV_FB_USED gauge"]
    for labels, values in gpus.items():
        lines += [
            f"DCGM_FI_DEV_FB_USED{{{labels}}} {v:.0f} {t}"
            for t, v in zip(times, values, strict=True)
        ]
    day = times[-1440:]
    lines.append("# TYPE encoder_memory gauge")
    lines += [f'encoder_memory{{pid="1"}} {300 + (i % 7)} {t}' for i, t in enumerate(day)]
    lines.append("# TYPE vramguard_test_used_bytes gauge")
    lines += [f'vramguard_test_used_bytes{{gpu="0"}} {2e9 + i % 5} {t}' for i, t in enumerate(day)]
    lines += [f'vramguard_test_used_bytes{{gpu="1"}} -1 {t}' for t in day]
    return "\n".join([*lines, "# EOF"]) + "\n", int(start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def authorised(url: str) -> urllib.request.Request:
    request = urllib.request.Request(url)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    return request


class Server:
    def __init__(self, port: int, start_s: int, end_s: int) -> None:
        self.port, self.start_s, self.end_s = port, start_s, end_s
        self.url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}"
        self.bare_url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("prometheus")
    end = int(time.time()) // 60 * 60 - 120
    text, start = week_of_history(end)
    (folder / "history.om").write_text(text)
    # one block for the week: 2h blocks cost 84 block directories and their fsyncs
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=168h",
         str(folder / "history.om"), str(folder / "data")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (folder / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    (folder / "web.yml").write_text(f"basic_auth_users:\n  {USER}: {PASSWORD_HASH}\n")
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
             f"--web.config.file={folder / 'web.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             "--storage.tsdb.retention.time=10y",  # the blocks are days old: keep them
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    authorised(f"http://127.0.0.1:{port}/-/ready"), timeout=2
                ):
                    break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (folder / "prometheus.log").read_text()[-2000:]
                    pytest.fail(f"prometheus did not start: {tail}")
                time.sleep(0.1)
        yield Server(port, start, end)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def analyze(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["analyze", *argv])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def week(server: Server, query: str, *more: str) -> tuple[int, str, str]:
    return analyze("--prometheus", server.url, "--query", query, "--start",
                   str(server.start_s), "--end", str(server.end_s), *more)  # fmt: skip


def one_line(code: int, err: str) -> str:
    assert code == 2 and err.count("\n") == 1 and err.startswith("vramguard: error: "), err
    return err


def test_a_week_of_dcgm_history_finds_exactly_the_leaking_gpu(prometheus: Server) -> None:
    code, out, err = week(prometheus, "DCGM_FI_DEV_FB_USED", "--json")
    result: dict[str, Any] = json.loads(out)
    assert (code, err) == (1, "")
    assert result["leaking"] == [LEAKING]
    verdicts = {s["series"]: s["verdict"] for s in result["series"]}
    assert len(verdicts) == 4 and list(verdicts.values()).count("stable") == 3
    leaking = next(s for s in result["series"] if s["series"] == LEAKING)
    assert leaking["labels"] == {"__name__": "DCGM_FI_DEV_FB_USED", "Hostname": "enc-b",
                                 "gpu": "1"}  # fmt: skip
    assert leaking["samples"] == WEEK_MINUTES
    assert 3 * 86400 < leaking["first_alert_t"] < 4 * 86400  # the leak began on day three
    assert leaking["peak_bytes"] > 5000 * MiB  # dcgm's MiB read as MiB, shown in bytes
    assert result["source"]["prometheus"] == prometheus.bare_url  # no password in reports


def test_the_screen_table_names_each_series_by_its_labels(prometheus: Server) -> None:
    code, out, _ = week(prometheus, 'DCGM_FI_DEV_FB_USED{Hostname="enc-b",gpu="1"}', "--since",
                        "1d")  # fmt: skip
    assert code == 2  # --since with --start is a contradiction: one line
    code, out, _ = analyze("--prometheus", prometheus.url, "--query",
                           'DCGM_FI_DEV_FB_USED{Hostname="enc-b"}', "--since", "6h",
                           "--end", str(prometheus.end_s))  # fmt: skip
    assert code == 1
    assert "1 of 2 series leak" in out and 'gpu="1"' in out.replace("\n", "")


def test_a_long_range_is_read_in_chunks_that_join_without_gaps(prometheus: Server) -> None:
    query = RangeQuery(prometheus.url, 'DCGM_FI_DEV_FB_USED{gpu="0"}', prometheus.start_s,
                       prometheus.end_s, 60.0)  # fmt: skip
    whole = read_range(query)
    chunked = read_range(query, max_points=1500)
    assert len(query.chunks(1500)) == 7
    assert [s.name for s in chunked.series] == [s.name for s in whole.series]
    for a, b in zip(whole.series, chunked.series, strict=True):
        np.testing.assert_array_equal(a.times_s, b.times_s)
        np.testing.assert_array_equal(a.values_bytes, b.values_bytes)
        assert len(a.times_s) == WEEK_MINUTES


def test_more_points_than_prometheus_serves_in_one_query_are_chunked(prometheus: Server) -> None:
    query = RangeQuery(prometheus.url, 'DCGM_FI_DEV_FB_USED{gpu="0"}', prometheus.start_s,
                       prometheus.end_s, 30.0)  # fmt: skip
    history = read_range(query)  # 20,159 points a series: two queries
    assert len(history.series) == 2 and len(history.series[0].times_s) > 11_000
    with pytest.raises(PrometheusError, match=r"rejected the query: .*11,000 points"):
        read_range(query, max_points=20_200)  # what one query would have met


def test_wrong_or_missing_credentials_are_one_line(prometheus: Server) -> None:
    for url in (prometheus.bare_url, f"http://{USER}:wrong@127.0.0.1:{prometheus.port}"):
        code, _, err = analyze("--prometheus", url, "--query", "up")
        assert "refused the request (HTTP 401): check the credentials" in one_line(code, err)


def test_a_bad_query_is_one_line_with_prometheus_reason(prometheus: Server) -> None:
    code, _, err = week(prometheus, "sum(DCGM_FI_DEV_FB_USED")
    assert "rejected the query: " in one_line(code, err)
    assert "parse error" in err


def test_an_empty_result_is_one_line(prometheus: Server) -> None:
    code, _, err = week(prometheus, 'DCGM_FI_DEV_FB_USED{gpu="7"}')
    assert "the query returned no series between " in one_line(code, err)


def test_a_unit_the_metric_does_not_say_must_be_given(prometheus: Server) -> None:
    code, _, err = week(prometheus, "encoder_memory")
    assert "cannot tell the unit of 'encoder_memory': give --unit" in one_line(code, err)
    code, out, _ = week(prometheus, "encoder_memory", "--unit", "MiB", "--json")
    assert code == 0 and json.loads(out)["series"][0]["peak_bytes"] == 306 * MiB


def test_an_aggregate_without_a_name_takes_the_unit_from_the_query(prometheus: Server) -> None:
    code, out, _ = analyze("--prometheus", prometheus.url, "--query",
                           'sum(DCGM_FI_DEV_FB_USED{Hostname="enc-a"})', "--since", "6h",
                           "--end", str(prometheus.end_s), "--json")  # fmt: skip
    series = json.loads(out)["series"]
    assert series[0]["series"] == "{}"
    # six hours are judged on their own scale, and the sum holds the leaking GPU
    assert code == (1 if series[0]["verdict"] == "leak" else 0)
    assert series[0]["peak_bytes"] > 5000 * MiB


def test_a_partial_answer_says_which_series_were_not_read(prometheus: Server) -> None:
    code, out, err = week(prometheus, "vramguard_test_used_bytes", "--json")
    assert code == 0 and err.count("\n") == 1
    assert "1 of 2 series could not be read and are not judged: " in err
    assert 'vramguard_test_used_bytes{gpu="1"} (negative values' in err
    result = json.loads(out)
    assert [s["series"] for s in result["series"]] == ['vramguard_test_used_bytes{gpu="0"}']
    assert result["unreadable"][0]["series"] == 'vramguard_test_used_bytes{gpu="1"}'


def test_too_many_series_is_one_line(prometheus: Server) -> None:
    query = RangeQuery(prometheus.url, "DCGM_FI_DEV_FB_USED", prometheus.end_s - 3600,
                       prometheus.end_s)  # fmt: skip
    with pytest.raises(PrometheusError, match="more than 3 series: too many to judge"):
        read_range(query, max_series=3)


def test_the_html_report_lists_every_series_and_is_not_overwritten(
    prometheus: Server, tmp_path: Path
) -> None:
    page = tmp_path / "history.html"
    query = 'DCGM_FI_DEV_FB_USED{Hostname="enc-b"}'
    code, _, _ = analyze("--prometheus", prometheus.url, "--query", query, "--since", "6h",
                         "--end", str(prometheus.end_s), "--html", str(page))  # fmt: skip
    text = page.read_text()
    assert code == 1 and text.count("<tr>") == 3 and "data:image/png;base64," in text
    assert PASSWORD not in text
    page.write_text("mine")
    code, _, err = analyze("--prometheus", prometheus.url, "--query", query, "--since", "6h",
                           "--html", str(page))  # fmt: skip
    assert "exists: use --force" in one_line(code, err) and page.read_text() == "mine"


def test_an_unreachable_server_is_one_line() -> None:
    code, _, err = analyze("--prometheus", f"http://127.0.0.1:{free_port()}", "--query", "up")
    assert "cannot reach Prometheus at http://127.0.0.1:" in one_line(code, err)


def test_a_server_that_never_answers_times_out_in_one_line() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, _, err = analyze("--prometheus", url, "--query", "up", "--timeout", "0.5s")
    assert "did not answer within 0.5 s" in one_line(code, err)


def test_something_that_is_not_prometheus_is_one_line(prometheus: Server) -> None:
    code, _, err = analyze("--prometheus", f"{prometheus.url}/graph", "--query", "up")
    assert "is it Prometheus's address?" in one_line(code, err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prometheus", "localhost:9090", "--query", "up"], "invalid Prometheus URL"),
        (["--prometheus", "http://127.0.0.1:9"], "--prometheus needs --query"),
        (["--prometheus", "http://127.0.0.1:9", "--query", " "], "empty --query"),
        (["--prometheus", "http://127.0.0.1:9", "--query", "up", "--start", "2026-11-27",
          "--end", "2026-11-26"], "the range is empty"),
        (["--prometheus", "http://127.0.0.1:9", "--query", "up", "--start", "yesterday"],
         "invalid time 'yesterday'"),
        (["--prometheus", "http://127.0.0.1:9", "--query", "up", "--metric", "gpu:0"],
         "--metric and --plot are for a log file"),
        (["some.log", "--prometheus", "http://127.0.0.1:9", "--query", "up"], "not both"),
        ([], "give a log FILE, or --prometheus URL --query PROMQL"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line(argv: list[str], message: str) -> None:
    code, _, err = analyze(*argv)
    assert message in one_line(code, err)


def test_series_judged_in_two_processes_get_the_same_verdicts(prometheus: Server) -> None:
    argv = ["--prometheus", prometheus.url, "--query", "DCGM_FI_DEV_FB_USED", "--since", "8h",
            "--end", str(prometheus.end_s), "--json"]  # fmt: skip
    code, one, _ = analyze(*argv, "--jobs", "1")
    code_two, two, _ = analyze(*argv, "--jobs", "2")
    assert code == code_two == 1
    assert json.loads(one) == json.loads(two)
    assert json.loads(one)["leaking"] == [LEAKING]
