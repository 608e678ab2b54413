"""Shared fixtures: tiny random Wan transformers (CPU, fp32, seconds)."""

from __future__ import annotations

import pytest
import torch

# The suite runs tiny models: one intra-op thread is faster than two for tensors this small, and it keeps
# timings stable when the machine is shared (two threads contending for a busy core stall badly).
torch.set_num_threads(1)

TINY_WAN = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=24,
    in_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=32,
    ffn_dim=64,
    num_layers=2,
    rope_max_seq_len=1024,
)


@pytest.fixture
def tiny_wan_kwargs() -> dict:
    return dict(TINY_WAN)


@pytest.fixture
def tiny_causal_wan():
    from streamvid.core.causal_wan import CausalWanModel

    torch.manual_seed(0)
    return CausalWanModel(**TINY_WAN).eval()


# ------------------------------------------------------------------------------------------------------------
# CI runs every test: with STREAMVID_NO_SKIPS=1 (set by .ci/run) a test skipped for any reason but the `gpu`
# marker fails the session, naming the test and the reason (a missing package, a missing shipped model ...).

_UNEXPECTED_SKIPS: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail") and "gpu" not in report.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _UNEXPECTED_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    import os

    if os.environ.get("STREAMVID_NO_SKIPS") == "1" and _UNEXPECTED_SKIPS and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    import os

    if os.environ.get("STREAMVID_NO_SKIPS") == "1" and _UNEXPECTED_SKIPS:
        terminalreporter.section("skipped tests (STREAMVID_NO_SKIPS=1: only `gpu` tests may skip)", red=True)
        for line in _UNEXPECTED_SKIPS:
            terminalreporter.write_line(line)
