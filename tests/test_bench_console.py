"""benchmarks/bench_console.py's core on a few ticks, without a browser: the plain loop, the loop with the console
attached (its server up, nobody connected) and read by the HTTP client all run, on the same number of ticks, and the
report has its keys. The browser arm is driven for real by the benchmark itself and, page by page, by
tests/test_console_browser.py."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--env.image_size=64", "--policy.encoder=conv", "--policy.backbone_trim_head=false",
         "--policy.cached_features=false", "--policy.hidden_dims=[32, 32]",
         "--policy.discrete_critic_hidden_dims=[32, 32]", "--env.control_time_s=1"]


def _load():
    spec = importlib.util.spec_from_file_location("bench_console", ROOT / "benchmarks" / "bench_console.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_console"] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_the_arms_run_the_same_ticks_and_the_report_has_its_keys():
    arms = ("closed", "open_no_browser", "open_http_client")
    out = bench.measure(ROOT / "configs" / "sim_grasp.json", SMALL, arms, blocks=2, ticks=12, warmup=2,
                        log=lambda s: None, lead_in=3)  # 15 ticks a block: an episode (10 steps) and a cut one
    for arm in arms:
        a = out["arms"][arm]
        assert a["ticks"] == 24
        assert 0 < a["p50_ms"] <= a["p99_ms"] and a["mean_ms"] > 0 and a["cpu_p50_ms"] > 0
        if arm != "closed":
            assert 0 < a["hooks_p50_ms"] < a["p50_ms"] and a["server_cpu_ms_per_s"] >= 0
            ratios = out[f"{arm}_vs_closed"]
            assert set(ratios) == {"p50_ratio", "p99_ratio", "p50_ratio_block_median"}
            assert all(r > 0 for r in ratios.values())
    client = out["arms"]["open_http_client"]
    assert client["feed_messages_received"] >= 1 and client["frames_received"] >= 0
    assert "frames_received" not in out  # the page's count, with the open arm only


def test_block_orders_put_every_arm_in_every_position():
    orders = bench.block_orders(bench.ARMS, 8)
    for position in range(4):
        assert sorted(o[position] for o in orders) == sorted(bench.ARMS * 2)


def test_the_open_arm_refuses_to_run_without_a_browser():
    with pytest.raises(bench.BenchError, match="browser"):
        bench.measure(ROOT / "configs" / "sim_grasp.json", SMALL, bench.ARMS, 1, 1, 0, browser=None)
