"""Shared fixtures: the real test data in ../shared/data and helpers to run the CLI for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(relpath: str) -> Path:
    """Path to real test data; skip when absent, unless CI demands it (PHOTOCORPUS_REQUIRE_DATA=1)."""
    path = SHARED_DATA / relpath
    if not path.exists():
        if os.environ.get("PHOTOCORPUS_REQUIRE_DATA") == "1":
            pytest.fail(f"required test data missing: {path}")
        pytest.skip(f"test data not present: {path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory):
    """Per-user state (the machine-wide Flickr rate-limit ledger) goes to a folder of this test session,
    for the tests and the CLI processes they start, never into the home of whoever runs them."""
    path = tmp_path_factory.mktemp("photocorpus-state")
    before = os.environ.get("PHOTOCORPUS_STATE_DIR")
    os.environ["PHOTOCORPUS_STATE_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("PHOTOCORPUS_STATE_DIR", None)
    else:
        os.environ["PHOTOCORPUS_STATE_DIR"] = before


@pytest.fixture(scope="session")
def instany_images() -> Path:
    """3,007 real InstaNY100K photos (300x300 JPEGs named <instagram media id>.jpg)."""
    return shared_data("instany100k/images")


@pytest.fixture(scope="session")
def mirflickr_images() -> Path:
    """5,000 real MIRFLICKR-25K photos (128x128, im<N>.jpg)."""
    return shared_data("mirflickr25k/images")


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600):
    """Run ``python -m photocorpus ARGS`` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "photocorpus", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"photocorpus {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
        )
    return proc


# The reliability suite (docs/reliability.md): the new modules mark themselves; these earlier fault,
# kill and hostile-input modules join it here, so `pytest -m reliability` runs every one of them.
RELIABILITY_MODULES = frozenset(
    {
        "test_fetch_faults",
        "test_fetch_kill",
        "test_fetch_netguard",
        "test_import_faults",
        "test_import_kill",
        "test_instagram_kill",
        "test_flickr",
        "test_flickr_cli",
        "test_enrich",
        "test_politeness",
        "test_explore_report",
        "test_report_browser",
        "test_search_captions",
        "test_imaging_render",
        "test_corpus",
        "test_layout",
        "test_export",
        "test_worker_pools",
    }
)


# The slow tier: whole-run acceptance checks (kill -9 chaos, thousands of photos against hostile
# servers, the dedup recall harness) that take 10 s to 2 min each. The default run (the README's test
# command) leaves them out to stay well under 15 minutes on 2 cores; `pytest -m slow` runs them, and
# .ci/run runs both tiers, so every one of them still gates a landing.
SLOW_TESTS = frozenset(
    {
        "test_recall_per_variant_and_pair_precision",
        "test_sigkill_during_fetch_then_resume_equals_uninterrupted",
        "test_ctrl_c_stops_cleanly_and_the_rerun_finishes",
        "test_sigkill_mid_import_then_resume_equals_uninterrupted",
        "test_sigkill_five_times_then_resume_equals_uninterrupted",
        "test_demo_flickr_harvests_three_cities",
        "test_hostile_server_3000_photos",
        "test_sigkill_twice_then_resume_repeats_no_stored_call",
        "test_kill_9_then_rerun_gives_every_photo_exactly_one_row",
        "test_enriching_1000_photos_matches_the_server_truth",
        "test_12000_bursty_photos_are_all_found_within_twice_the_minimum_calls",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in RELIABILITY_MODULES:
            item.add_marker(pytest.mark.reliability)
        if getattr(item, "originalname", item.name) in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
