"""Active speaker: voice activity on real and synthetic audio, floor changes on scripted talk."""

from __future__ import annotations

import itertools
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mcu import _mix
from mcu.media import speech_wav
from mcu.speaker import (
    TICK,
    FloorChange,
    FloorTracker,
    RoomSpeaker,
    VoiceDetector,
    rfc6464_dbov,
)

FRAME = 960  # samples per tick at 48 kHz
FULL_SCALE = 32768.0
GREETING = "Xin chào các đồng chí"

Talk = Mapping[str, Sequence[tuple[float, float]]]


# --- scripted floor timelines -------------------------------------------------------------------


def talking_at(now: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(start - 1e-9 <= now < end - 1e-9 for start, end in spans)


def play(
    tracker: FloorTracker,
    talk: Talk,
    start: float,
    end: float,
    sites: Sequence[str] = ("A", "B", "C"),
) -> list[FloorChange]:
    """Feed the tracker one tick at a time from `start` to `end`; `talk` gives speech spans."""
    changes = []
    for k in range(round(start / TICK), round(end / TICK)):
        now = k * TICK
        flags = {site: talking_at(now, talk.get(site, ())) for site in sites}
        change = tracker.update(now, flags)
        if change is not None:
            changes.append(change)
    return changes


def script(talk: Talk, until: float, **options: float) -> list[FloorChange]:
    return play(FloorTracker(**options), talk, 0.0, until)


def assert_changes(changes: Sequence[FloorChange], expected: Sequence[tuple[float, str]]) -> None:
    """Same sites in the same order, each change within one tick of the expected time."""
    assert [c.site for c in changes] == [site for _, site in expected], changes
    for change, (time, _) in zip(changes, expected):
        assert abs(change.time - time) <= TICK + 1e-9, (change, time)


def clicks(start: float, every: float, length: float, total: float) -> list[tuple[float, float]]:
    count = int(total / every + 1e-9)
    return [(start + i * every, start + i * every + length) for i in range(count)]


def test_one_site_talking_from_silence_takes_the_floor_after_take_after() -> None:
    changes = script({"A": [(2.0, 5.0)]}, until=10.0)
    assert_changes(changes, [(2.0 + 1.0, "A")])
    assert changes[0].previous is None


@pytest.mark.parametrize("silence", [0.5, 3.0])
def test_next_talker_takes_the_floor_once_after_the_holder_stopped(silence: float) -> None:
    a_end = 3.0
    b_start = a_end + silence
    changes = script({"A": [(0.0, a_end)], "B": [(b_start, b_start + 3.0)]}, until=12.0)
    assert_changes(changes, [(1.0, "A"), (b_start + 1.0, "B")])
    assert changes[1].previous == "A"


def test_coughs_and_typing_never_switch_the_floor() -> None:
    coughs = [(4.0, 4.2), (5.0, 5.2), (6.1, 6.3)]
    typing = clicks(7.0, every=0.15, length=0.05, total=2.0)
    changes = script({"A": [(0.0, 3.0)], "B": coughs + typing}, until=12.0)
    assert_changes(changes, [(1.0, "A")])


def test_coughs_and_typing_take_no_free_floor() -> None:
    tracker = FloorTracker()
    typing = clicks(3.0, every=0.15, length=0.05, total=2.0)
    assert len(typing) == 13
    changes = play(tracker, {"B": [(1.0, 1.2), (2.0, 2.2), *typing]}, 0.0, 8.0)
    assert changes == []
    assert tracker.holder is None
    assert tracker.recent() == ()


@pytest.mark.parametrize("a_talking", [False, True])
def test_short_interjection_does_not_switch(a_talking: bool) -> None:
    a_talk = [(0.0, 10.0)] if a_talking else [(0.0, 2.0)]
    changes = script({"A": a_talk, "B": [(4.0, 4.6)]}, until=10.0)
    assert_changes(changes, [(1.0, "A")])


def test_talking_over_the_holder_for_1_5_s_does_not_switch() -> None:
    changes = script({"A": [(0.0, 12.0)], "B": [(4.0, 5.5)]}, until=12.0)
    assert_changes(changes, [(1.0, "A")])


def test_talking_over_the_holder_for_2_5_s_switches_once_and_not_back_within_hold_min() -> None:
    changes = script({"A": [(0.0, 12.0)], "B": [(4.0, 6.5)]}, until=12.0)
    # B needs twice take_after against a talking holder; A gets the floor back only once B's
    # run has ended and B has held it for hold_min
    assert_changes(changes, [(1.0, "A"), (4.0 + 2.0, "B"), (6.0 + 2.0, "A")])


def test_two_sites_talking_on_and_on_do_not_flip() -> None:
    changes = script({"A": [(0.0, 20.0)], "B": [(4.0, 20.0)]}, until=20.0)
    assert_changes(changes, [(1.0, "A"), (4.0 + 2.0, "B")])


def test_short_pauses_between_words_keep_one_talk_run() -> None:
    words = [(0.0, 0.5), (0.7, 1.2), (1.4, 1.9), (2.1, 2.6)]
    changes = script({"A": words}, until=5.0)
    # bridged: the run started at 0.0; without the bridge it would have restarted at 0.7 and 1.4
    assert_changes(changes, [(1.0, "A")])


def test_a_half_second_pause_ends_the_talk_run() -> None:
    words = [(0.0, 0.8), (1.3, 2.1), (2.6, 3.4), (3.9, 4.7)]
    assert script({"A": words}, until=6.0) == []

    then_on = [(0.0, 0.8), (1.3, 4.0)]
    assert_changes(script({"A": then_on}, until=6.0), [(1.3 + 1.0, "A")])


def test_gap_bridge_boundary_in_ticks() -> None:
    # 280 ms of silence is shorter than gap_bridge, 300 ms is not
    bridged = script({"A": [(0.0, 0.6), (0.88, 2.0)]}, until=3.0)
    assert_changes(bridged, [(1.0, "A")])
    broken = script({"A": [(0.0, 0.6), (0.9, 2.5)]}, until=3.0)
    assert_changes(broken, [(0.9 + 1.0, "A")])


def test_challenger_waits_for_hold_min() -> None:
    a_take = 1.0
    b_start = a_take + 0.2  # qualifies 1.2 s after A took the floor
    changes = script({"A": [(0.0, 1.1)], "B": [(b_start, 6.0)]}, until=8.0)
    assert_changes(changes, [(a_take, "A"), (a_take + 2.0, "B")])


def test_holder_leaving_frees_the_floor_for_the_next_talker() -> None:
    tracker = FloorTracker()
    talk = {"A": [(0.0, 3.0)], "B": [(5.0, 9.0)], "C": [(7.0, 9.0)]}
    first = play(tracker, talk, 0.0, 4.0)
    assert_changes(first, [(1.0, "A")])

    tracker.remove("A")
    assert tracker.holder is None
    later = play(tracker, talk, 4.0, 10.0, sites=("B", "C"))
    assert_changes(later, [(5.0 + 1.0, "B")])
    assert later[0].previous is None
    assert tracker.previous is None  # A is gone


def test_holder_leaving_hands_over_at_once_to_a_qualifying_talker() -> None:
    tracker = FloorTracker()
    talk = {"A": [(0.0, 10.0)], "B": [(1.5, 10.0)]}
    assert_changes(play(tracker, talk, 0.0, 3.0), [(1.0, "A")])
    tracker.remove("A")
    later = play(tracker, talk, 3.0, 5.0, sites=("B",))
    # B's run is 1.5 s long already: it takes the free floor on the next tick
    assert_changes(later, [(3.0, "B")])


def test_recent_previous_and_history() -> None:
    tracker = FloorTracker()
    talk = {
        "A": [(0.0, 2.0)],
        "B": [(3.0, 5.0)],
        "C": [(6.0, 8.0)],
        "D": [(7.5, 8.7)],  # qualifies at 8.5, within C's hold_min, and stops before 9.0
    }
    changes = play(tracker, talk, 0.0, 10.0, sites=("A", "B", "C", "D", "E"))
    assert_changes(changes, [(1.0, "A"), (4.0, "B"), (7.0, "C")])
    assert [round(t, 6) for t, _ in tracker.history] == [1.0, 4.0, 7.0]
    assert [site for _, site in tracker.history] == ["A", "B", "C"]
    assert tracker.holder == "C"
    assert tracker.previous == "B"
    assert tracker.recent() == ("D", "C", "B", "A")
    assert tracker.recent(2) == ("D", "C")

    tracker.remove("B")
    assert tracker.previous == "A"
    assert tracker.recent() == ("D", "C", "A")


def test_floor_tracker_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="take_after"):
        FloorTracker(take_after=0.0)
    with pytest.raises(ValueError, match="min_voiced"):
        FloorTracker(min_voiced=1.5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("ABC"), st.integers(0, 400), st.integers(1, 150)),
        max_size=12,
    )
)
def test_floor_rules_hold_for_any_talk(spans: list[tuple[str, int, int]]) -> None:
    talk: dict[str, list[tuple[float, float]]] = {}
    for site, start, length in spans:
        talk.setdefault(site, []).append((start * TICK, (start + length) * TICK))
    tracker = FloorTracker()
    changes = play(tracker, talk, 0.0, 12.0)

    assert [(c.time, c.site) for c in changes] == tracker.history
    for before, after in itertools.pairwise(changes):
        assert after.previous == before.site != after.site
        assert after.time - before.time >= 2.0 - 1e-6
    for change in changes:
        # the taker is talking at that tick and has talked for at least take_after
        spans_of = talk[change.site]
        assert talking_at(change.time, spans_of)
        assert any(start <= change.time - 1.0 + 1e-6 for start, _ in spans_of)


# --- voice activity -----------------------------------------------------------------------------


def rows(signal: NDArray[np.float64]) -> NDArray[np.int16]:
    """A float signal in int16 units cut into 20 ms frames; a tail short of a frame is dropped."""
    usable = len(signal) - len(signal) % FRAME
    clipped = np.clip(np.round(signal[:usable]), -32768, 32767)
    return np.ascontiguousarray(clipped.astype(np.int16).reshape(-1, FRAME))


def levels(frames: NDArray[np.int16]) -> NDArray[np.float64]:
    out = np.empty(len(frames))
    _mix.levels_dbov(frames, out)
    return out


def noise(rng: np.random.Generator, seconds: float, dbov: float) -> NDArray[np.float64]:
    """White noise whose RMS level is `dbov`."""
    return rng.standard_normal(round(seconds * 48000)) * FULL_SCALE * 10 ** (dbov / 20)


def detect(detector: VoiceDetector, frames: NDArray[np.int16]) -> NDArray[np.bool_]:
    return np.array([detector.is_speech(f, lv) for f, lv in zip(frames, levels(frames))])


def read_wav(path: Path) -> NDArray[np.float64]:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 48000)
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float64)


@pytest.fixture(scope="module")
def greeting(tmp_path_factory: pytest.TempPathFactory) -> NDArray[np.float64]:
    return read_wav(speech_wav(GREETING, tmp_path_factory.mktemp("speech") / "greeting.wav"))


def test_steady_noise_is_not_speech() -> None:
    rng = np.random.default_rng(11)
    frames = rows(noise(rng, 10.0, -40.0))
    flags = detect(VoiceDetector(), frames)
    assert not flags.any()


def test_louder_steady_noise_becomes_background_within_steady_s() -> None:
    rng = np.random.default_rng(12)
    frames = rows(np.concatenate([noise(rng, 2.0, -65.0), noise(rng, 10.0, -40.0)]))
    detector = VoiceDetector(steady_s=1.0)
    flags = detect(detector, frames)
    step = round(2.0 / TICK)
    settled = step + round(1.0 / TICK)
    assert not flags[:step].any()
    assert not flags[settled:].any(), np.nonzero(flags)[0]
    assert detector.floor is not None and abs(detector.floor + 40.0) < 1.0


def test_speech_15_db_above_steady_noise_is_speech(greeting: NDArray[np.float64]) -> None:
    rng = np.random.default_rng(13)
    clean_levels = levels(rows(greeting))
    voiced = np.repeat(clean_levels > -40.0, FRAME)
    active_dbov = 10 * np.log10(np.mean(greeting[: len(voiced)][voiced] ** 2) / FULL_SCALE**2)
    gain = 10 ** ((-40.0 + 15.0 - active_dbov) / 20)

    # 3 s of noise alone, then the sentence over it
    speech = np.concatenate([np.zeros(3 * 48000), gain * greeting, np.zeros(48000)])
    frames = rows(speech + noise(rng, len(speech) / 48000, -40.0))
    flags = detect(VoiceDetector(), frames)
    clean = levels(rows(speech))
    loud = clean > -40.0 + 15.0 - 6.0  # the sentence's stronger frames
    quiet = clean == -127.0
    assert loud.sum() > 20
    assert flags[loud].mean() >= 0.7
    assert not flags[quiet].any()


def test_real_speech_is_found_and_its_silences_are_not(greeting: NDArray[np.float64]) -> None:
    rng = np.random.default_rng(14)
    pad = np.zeros(48000)
    speech = np.concatenate([pad, greeting, pad])
    frames = rows(speech + noise(rng, len(speech) / 48000, -60.0))
    flags = detect(VoiceDetector(), frames)

    clean = levels(rows(speech))
    voiced = clean > -40.0
    silent = clean == -127.0
    assert voiced.sum() > 40 and silent.sum() > 90
    assert flags[voiced].mean() >= 0.9
    assert flags[silent].mean() <= 0.05


def test_silence_is_never_speech() -> None:
    detector = VoiceDetector(aggressiveness=None)
    zeros = np.zeros(FRAME, np.int16)
    for level in (-60.0, -127.0, -127.0):
        detector.is_speech(None, level)
    assert detector.floor == -60.0  # silent frames leave the background alone
    assert not detector.is_speech(zeros, -127.0, vad_flag=True)
    assert not VoiceDetector().is_speech(zeros, -127.0)


def test_background_falls_at_once_and_rises_slowly() -> None:
    detector = VoiceDetector(aggressiveness=None, rise_db_per_s=0.5)
    detector.is_speech(None, -40.0)
    detector.is_speech(None, -60.0)
    assert detector.floor == -60.0

    # a level that keeps moving by 6 dB is not steady: the background creeps up at 0.5 dB/s
    seconds = 10.0
    for k in range(round(seconds / TICK)):
        detector.is_speech(None, -50.0 if k % 2 else -44.0)
    assert detector.floor is not None
    assert abs(detector.floor - (-60.0 + 0.5 * seconds)) < 0.5 * TICK + 1e-9


def test_level_margin_and_absolute_minimum() -> None:
    detector = VoiceDetector(aggressiveness=None, margin_db=9.0, min_dbov=-55.0)
    detector.is_speech(None, -70.0)
    assert not detector.is_speech(None, -56.0)  # 14 dB above the floor but under -55 dBov
    assert detector.is_speech(None, -54.0)

    detector = VoiceDetector(aggressiveness=None, margin_db=9.0)
    detector.is_speech(None, -40.0)
    assert not detector.is_speech(None, -31.5)
    assert detector.is_speech(None, -30.5)


def test_rtp_voice_flag_stands_in_for_webrtcvad() -> None:
    rng = np.random.default_rng(15)
    quiet = rows(noise(rng, 0.1, -60.0))
    loud = rows(noise(rng, 0.02, -20.0))[0]
    detector = VoiceDetector()
    detect(detector, quiet)
    assert not detector.is_speech(loud, -20.0, vad_flag=False)
    assert detector.is_speech(None, -20.0, vad_flag=True)


def test_rfc6464_level() -> None:
    assert rfc6464_dbov(0) == 0.0
    assert rfc6464_dbov(127) == -127.0
    with pytest.raises(ValueError, match=r"0\.\.127"):
        rfc6464_dbov(128)


def test_wrong_frame_length_is_refused() -> None:
    with pytest.raises(ValueError, match="samples"):
        VoiceDetector().is_speech(np.zeros(1000, np.int16), -30.0)


# --- the room's view ----------------------------------------------------------------------------


def test_room_speaker_follows_real_speech_from_a_to_b(tmp_path: Path) -> None:
    rng = np.random.default_rng(16)
    a = read_wav(
        speech_wav(
            "Xin chào các đồng chí, hôm nay chúng ta họp trực tuyến về kế hoạch năm tới",
            tmp_path / "a.wav",
        )
    )
    b = read_wav(
        speech_wav("Cảm ơn đồng chí, tỉnh chúng tôi đã chuẩn bị xong báo cáo", tmp_path / "b.wav")
    )

    # A speaks after 1 s of room noise, B half a second after A ends; each site has its own noise
    a_at = 48000
    b_at = a_at + len(a) + 24000
    total = b_at + len(b) + 48000
    clean = {"A": np.zeros(total), "B": np.zeros(total)}
    clean["A"][a_at : a_at + len(a)] = a
    clean["B"][b_at : b_at + len(b)] = b
    sent = {site: rows(x + noise(rng, total / 48000, -60.0)) for site, x in clean.items()}

    room = RoomSpeaker()
    changes = []
    heard: dict[str, int] = {"A": 0, "B": 0}
    both = np.empty((2, FRAME), np.int16)
    both_levels = np.empty(2)
    for k in range(len(sent["A"])):
        both[0], both[1] = sent["A"][k], sent["B"][k]
        _mix.levels_dbov(both, both_levels)
        change = room.update(
            k * TICK,
            {"A": float(both_levels[0]), "B": float(both_levels[1])},
            {"A": sent["A"][k], "B": sent["B"][k]},
        )
        for site in room.speaking:
            heard[site] += 1
        if change is not None:
            changes.append(change)

    assert [(c.previous, c.site) for c in changes] == [(None, "A"), ("A", "B")]
    # each takes the floor take_after into its speech, or at its next word after a short pause
    for change, site in zip(changes, "AB"):
        start = float(np.argmax(levels(rows(clean[site])) > -40.0)) * TICK
        assert start + 1.0 - TICK <= change.time <= start + 1.0 + 0.3
    assert heard["A"] > 0.7 * len(a) / FRAME and heard["B"] > 0.7 * len(b) / FRAME
    assert room.holder == "B" and room.floor.previous == "A"


def test_room_speaker_with_rtp_flags_and_no_samples() -> None:
    room = RoomSpeaker()
    changes = []
    for k in range(round(6.0 / TICK)):
        now = k * TICK
        talking = 1.0 <= now < 4.0
        # both sites are loud and uneven like speech; only B's header says it is voice
        level = (-32.0 if k % 5 == 0 else -20.0) if talking else -60.0
        change = room.update(
            now, {"A": level, "B": level}, {"A": None, "B": None}, {"A": False, "B": talking}
        )
        if 1.0 <= now < 4.0:
            assert room.speaking == {"B"}
        if change is not None:
            changes.append(change)
    assert_changes(changes, [(2.0, "B")])

    room.remove("B")
    assert room.holder is None and room.speaking == frozenset()
