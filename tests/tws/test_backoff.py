"""The reconnect policy, as pure functions: refusals retry on a short cap, handshake failures
back off exponentially, READY resets, max_attempts counts every kind; and the probe schedule."""

from __future__ import annotations

import itertools

import pytest

from twsbus.config import Config, load
from twsbus.tws.backoff import Backoff, Failure, Stage, classify
from twsbus.tws.session import TwsConfig, probe_due_in

REFUSED, LOST, HANDSHAKE = Failure.REFUSED, Failure.LOST, Failure.HANDSHAKE


def _mid() -> float:
    return 0.5  # no jitter on handshake delays (factor 0.8 + 0.4 * 0.5 = 1)


@pytest.mark.parametrize("r", [0.0, 0.5, 0.999999])
def test_refused_delays_never_exceed_the_cap_however_long_tws_is_down(r: float) -> None:
    policy = Backoff(refused=0.5, initial=1.0, maximum=30.0, rand=lambda: r)
    delays = [policy.failed(REFUSED) for _ in range(1000)]
    assert all(d is not None and 0.25 <= d <= 0.5 for d in delays)


def test_losing_a_ready_link_retries_as_fast_as_a_refusal() -> None:
    policy = Backoff(refused=0.5, rand=_mid)
    delay = policy.failed(LOST)
    assert delay is not None and delay <= 0.5


def test_handshake_failures_double_to_the_maximum() -> None:
    policy = Backoff(refused=0.5, initial=1.0, maximum=30.0, rand=_mid)
    assert [policy.failed(HANDSHAKE) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_jitter_keeps_handshake_delays_within_twenty_percent_and_the_maximum() -> None:
    for r in (0.0, 0.999999):
        policy = Backoff(initial=1.0, maximum=3.0, rand=lambda r=r: r)
        delays = [policy.failed(HANDSHAKE) for _ in range(4)]
        assert all(d is not None and d <= 3.0 for d in delays)
        assert delays[0] == pytest.approx(0.8 if r == 0 else 1.2, abs=1e-5)


def test_refusals_between_handshake_failures_neither_grow_nor_reset_the_backoff() -> None:
    policy = Backoff(refused=0.5, initial=1.0, maximum=30.0, rand=_mid)
    assert policy.failed(HANDSHAKE) == 1
    assert policy.failed(HANDSHAKE) == 2
    for _ in range(20):
        policy.failed(REFUSED)
    assert policy.failed(HANDSHAKE) == 4


def test_ready_resets_the_backoff_and_the_attempt_count() -> None:
    policy = Backoff(initial=1.0, maximum=30.0, max_attempts=5, rand=_mid)
    for _ in range(4):
        policy.failed(HANDSHAKE)
    policy.ready()
    assert policy.attempts == 0
    assert policy.failed(HANDSHAKE) == 1


def test_max_attempts_counts_failures_of_every_kind_in_a_row() -> None:
    policy = Backoff(max_attempts=3, rand=_mid)
    assert policy.failed(LOST) is not None
    assert policy.failed(REFUSED) is not None
    assert policy.failed(HANDSHAKE) is None
    assert Backoff(max_attempts=0).failed(REFUSED) is not None  # 0 = never give up


def test_back_to_back_restarts_resume_within_the_cap_after_every_one() -> None:
    # Virtual time: TWS refuses for `down` seconds, accepts for `up`, ten times over. The old
    # policy (doubling, reset only after 60 s up) resumed 24-36 s late by the third restart.
    cap = 0.5
    policy = Backoff(refused=cap, initial=1.0, maximum=30.0)
    now = 0.0
    for down, up in itertools.islice(itertools.cycle([(2.0, 5.0), (45.0, 1.0), (0.3, 20.0)]), 10):
        accepting_at = now + down
        delay = policy.failed(LOST)
        while delay is not None and now + delay < accepting_at:
            now += delay
            delay = policy.failed(REFUSED)
        assert delay is not None
        now += delay  # this attempt reaches a listening TWS
        policy.ready()
        assert now - accepting_at <= cap
        now += up


@pytest.mark.parametrize(("stage", "spoke", "timed_out", "kind"), [
    (Stage.CONNECT, False, False, REFUSED),  # ConnectionRefusedError, unreachable
    (Stage.CONNECT, False, True, REFUSED),  # SYN unanswered for connect_timeout
    (Stage.HANDSHAKE, False, False, REFUSED),  # accepted and hung up without a byte
    (Stage.HANDSHAKE, False, True, HANDSHAKE),  # holds the connection, never answers
    (Stage.START, True, False, HANDSHAKE),  # 326, or closed before nextValidId
    (Stage.START, True, True, HANDSHAKE),  # no nextValidId
    (Stage.READY, True, False, LOST),
])
def test_a_failure_is_classified_by_how_far_the_attempt_got(
        stage: Stage, spoke: bool, timed_out: bool, kind: Failure) -> None:
    assert classify(stage, spoke, timed_out) is kind


def test_only_a_link_quiet_for_the_whole_interval_is_probed() -> None:
    assert probe_due_in(now=10.0, last_rx=9.5, interval=2.0) == pytest.approx(1.5)
    assert probe_due_in(now=11.5, last_rx=9.5, interval=2.0) == 0.0
    assert probe_due_in(now=12.0, last_rx=11.9, interval=2.0) == pytest.approx(1.9)


def test_default_settings_detect_a_silent_link_within_three_seconds() -> None:
    for cfg in (TwsConfig(), Config().tws()):
        assert cfg.probe_interval + cfg.probe_timeout <= 3.0
        assert cfg.reconnect_refused <= 0.5


def test_tws_settings_reach_the_session_and_bad_ones_name_their_key() -> None:
    cfg = load({"tws_max_version": 176, "reconnect_refused": 0.25, "probe_interval": 1.5,
                "probe_timeout": 0.5}, None, environ={}).tws()
    assert (cfg.max_version, cfg.reconnect_refused) == (176, 0.25)
    assert (cfg.probe_interval, cfg.probe_timeout) == (1.5, 0.5)
    assert Config().tws().max_version == 0
    from twsbus.config import ConfigError

    for key in ("reconnect_refused", "probe_interval", "probe_timeout", "tws_max_version"):
        with pytest.raises(ConfigError, match=key):
            load({key: -1}, None, environ={})


def test_the_offered_version_is_the_setting_clamped_to_what_ibapi_speaks() -> None:
    from ibapi import server_versions

    from twsbus.config import ConfigError
    from twsbus.tws.session import PROVEN_MAX_VERSION, offered_max_version

    ibapi_max = server_versions.MAX_CLIENT_VER
    assert offered_max_version(0) == min(PROVEN_MAX_VERSION, ibapi_max)
    assert offered_max_version(176) == min(176, ibapi_max)
    assert offered_max_version(999) == ibapi_max
    env = load({}, None, environ={"TWSBUS_TWS_MAX_VERSION": "200"})
    assert env.tws().max_version == 200
    with pytest.raises(ConfigError, match=r"tws_max_version.*at least 100"):
        load({"tws_max_version": 99}, None, environ={})
