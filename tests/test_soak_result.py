"""The soak's typed result keeps the JSON documented in docs/log-format.md: the keys of a
result recorded before the runner became a scheduler over two pipelines, in their order."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from vramguard.commands.soak import print_soak
from vramguard.criteria import Criteria
from vramguard.encode import EncoderConfig, EncoderUnavailable
from vramguard.pipelines import BaselinePipeline, ManagedPipeline
from vramguard.pools.sessions import PoolError
from vramguard.soak import SoakConfig, SoakRunner
from vramguard.soakresult import SoakResult

RECORDED = Path(__file__).parent / "data" / "results"
#: keys whose None-ness says which pipeline ran (None in the baseline, set when managed)
PIPELINE_KEYS = ("max_idle_bytes", "reference_peak_bytes", "reference_peak_basis",
                 "staging_peak_bytes")  # fmt: skip


@functools.cache  # one run of each kind serves every test here
def typed_soak(baseline: bool) -> tuple[SoakResult, SoakRunner]:
    config = SoakConfig(
        EncoderConfig("h264", 320, 240, 30, 500, encoder="libx264"), duration_s=4.0,
        ladder_kbps=(300, 500), adapt_every_s=1.0, baseline=baseline,
        criteria=Criteria(min_reuse_rate=0.0),
    )  # fmt: skip
    runner = SoakRunner(config)
    return runner.run(), runner


def small_soak(baseline: bool) -> tuple[dict[str, Any], SoakRunner]:
    result, runner = typed_soak(baseline)
    return result.as_dict(), runner


@pytest.mark.parametrize("kind", ["managed", "baseline"])
def test_the_result_has_the_recorded_keys_in_order(kind: str) -> None:
    recorded = json.loads((RECORDED / f"soak_{kind}.json").read_text())
    recorded.pop("log", None)  # the command adds it where it wrote a log
    result, _ = small_soak(baseline=kind == "baseline")
    assert list(result) == list(recorded)
    assert [list(row) for row in result["criteria"]] == [list(r) for r in recorded["criteria"]]
    assert [list(rung) for rung in result["rungs"]] == [list(r) for r in recorded["rungs"]]
    assert [row["name"] for row in result["criteria"]] == [r["name"] for r in recorded["criteria"]]
    for key in PIPELINE_KEYS:
        assert (result[key] is None) == (recorded[key] is None), key
    json.dumps(result)  # plain JSON: no tuples or dataclasses left


def test_each_pipeline_has_its_own_ledger_and_the_baseline_no_pools() -> None:
    managed, runner = small_soak(baseline=False)
    assert isinstance(runner.pipeline, ManagedPipeline)
    assert managed["sessions_created"] == 1 and managed["adapted_in_place"] == 3
    baseline, runner = small_soak(baseline=True)
    assert isinstance(runner.pipeline, BaselinePipeline)
    assert not hasattr(runner.pipeline, "pool") and not hasattr(runner.pipeline, "staging")
    # a new encoder for the start and each of the 3 rate changes, none served warm
    assert baseline["sessions_created"] == baseline["acquisitions"] == 4
    assert baseline["session_reuse_rate"] == 0.0 and baseline["adapted_in_place"] == 0
    assert baseline["rate_change_keyframes"] == 3  # each new session starts on an IDR


def test_the_soak_table_speaks_mib_and_says_not_measured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result, _ = typed_soak(baseline=True)
    print_soak(result)
    out = capsys.readouterr().out
    lines = out.splitlines()
    peak = next(line for line in lines if "peak memory" in line)
    assert "< 476.8 MiB" in peak  # the threshold in the figure's own unit
    assert "500000000" not in out and "MB/h" not in out and "n/a" not in out
    references = next(line for line in lines if "reference frames" in line)
    assert "not measured" in references and " ok" not in references


def test_a_leak_the_online_detector_missed_still_names_its_likely_source() -> None:
    config = SoakConfig(EncoderConfig("h264", 320, 240, 30, 500, encoder="libx264"),
                        duration_s=20.0)  # fmt: skip
    runner = SoakRunner(config, leak_bytes_per_frame=100_000)
    try:
        first = runner.run()
        assert first.leak_verdict == "leak"
        runner.tracker.alerts.clear()  # as when a loaded machine skipped the samples it needed
        again = runner.result()
    finally:
        runner._leaked.clear()
    assert again.leak_verdict == "leak"
    assert again.likely_source == "unaccounted"  # none of our pools holds it


def test_a_soak_with_no_encoder_closes_its_pipeline_before_it_raises() -> None:
    def no_encoder(config: EncoderConfig) -> Any:
        raise EncoderUnavailable("no h264 encoder here (test)")

    config = SoakConfig(EncoderConfig("h264", 160, 120, 30, 300), duration_s=1.0)
    runner = SoakRunner(config, open_session=no_encoder)
    with pytest.raises(EncoderUnavailable):
        runner.run()
    assert isinstance(runner.pipeline, ManagedPipeline)
    with pytest.raises(PoolError, match="closed"):
        runner.pipeline.pool.acquire(config.encoder)
