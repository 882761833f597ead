"""Opus encoders: settings read back from libopus, and packets checked by independent decoders."""

from __future__ import annotations

import itertools
from dataclasses import replace
from fractions import Fraction
from typing import cast

import av
import numpy as np
import opuslib
import opuslib.api.decoder
import pytest
from av.audio.codeccontext import AudioCodecContext

from mcu.media import speech_wav
from mcu.opus import FRAME_SAMPLES, OpusEncoder, OpusSettings, settings_for_profile

RATE = 48000
SENTENCE = (
    "Xin chào các đồng chí, hôm nay chúng ta họp trực tuyến với các tỉnh miền Trung "
    "để bàn về công tác phòng chống bão lụt."
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Vietnamese speech from espeak-ng as mono int16 at 48 kHz, cut to whole 20 ms frames."""
    wav = speech_wav(SENTENCE, tmp_path_factory.mktemp("opus") / "speech.wav")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks = []
    with av.open(str(wav)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    samples = np.concatenate(chunks).astype(np.int16)
    assert len(samples) >= 5 * RATE, "the sentence should last at least 5 s"
    return samples[: len(samples) // FRAME_SAMPLES * FRAME_SAMPLES]


def sine(frequency: float, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def frames(signal: np.ndarray) -> list[np.ndarray]:
    return [signal[i : i + FRAME_SAMPLES] for i in range(0, len(signal), FRAME_SAMPLES)]


def encode_all(settings: OpusSettings, signal: np.ndarray) -> list[bytes]:
    encoder = OpusEncoder(settings)
    try:
        return [encoder.encode(frame) for frame in frames(signal)]
    finally:
        encoder.close()


def decode_with_pyav(packets: list[bytes], codec: str = "libopus") -> np.ndarray:
    """Decode with FFmpeg's decoder through PyAV; returns the first channel on the int16 scale,
    after checking that the others carry the same signal (the mix is mono)."""
    context = cast(AudioCodecContext, av.CodecContext.create(codec, "r"))
    pieces = []
    for index, data in enumerate(packets):
        packet = av.Packet(data)
        packet.pts = index * FRAME_SAMPLES
        packet.time_base = Fraction(1, RATE)
        for frame in context.decode(packet):
            channels = len(frame.layout.channels)
            array = frame.to_ndarray().astype(np.float64)
            if frame.format.name.startswith("flt"):
                array *= 32768.0
            pieces.append(array if frame.format.is_planar else array.reshape(-1, channels).T)
    decoded = np.concatenate(pieces, axis=1)

    # stereo coding of equal channels is lossy too: near, not bit-equal
    for other in decoded[1:]:
        assert rms(other - decoded[0]) < 0.03 * rms(decoded[0]), "channels differ"
    return np.asarray(decoded[0], np.float64)


def best_lag(reference: np.ndarray, decoded: np.ndarray, most: int = 2000) -> int:
    """The delay (0 to `most` - 1 samples) of `decoded` behind `reference` that maximises their
    cross-correlation, computed through the FFT."""
    size = 1 << int(np.ceil(np.log2(len(reference) + len(decoded))))
    cross = np.fft.irfft(np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(reference, size)), size)
    return int(np.argmax(cross[:most]))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(signal.astype(np.float64) ** 2)))


def rms_db(signal: np.ndarray) -> float:
    return 20 * float(np.log10(rms(signal)))


# -- settings --------------------------------------------------------------------------------


def every_combination(channels: int) -> list[OpusSettings]:
    combos = itertools.product(
        (True, False), (0, 5, 20), (True, False), (16000, 24000, 32000, 64000)
    )
    complexities = itertools.cycle((0, 5, 10, 3))
    applications = itertools.cycle(("voip", "voip", "audio"))
    return [
        OpusSettings(
            bitrate=bitrate,
            channels=channels,
            fec=fec,
            loss_percent=loss,
            dtx=dtx,
            application=next(applications),
            complexity=next(complexities),
        )
        for fec, loss, dtx, bitrate in combos
    ]


@pytest.mark.parametrize("channels", [1, 2])
def test_every_setting_reads_back_as_set(channels: int) -> None:
    for settings in every_combination(channels):
        encoder = OpusEncoder(settings)
        assert encoder.read_back() == settings
        assert encoder.settings == settings
        encoder.close()


@pytest.mark.parametrize("channels", [1, 2])
def test_settings_change_in_place_and_read_back(channels: int) -> None:
    start = OpusSettings(bitrate=40000, channels=channels, fec=False, loss_percent=1, dtx=False)
    encoder = OpusEncoder(start)
    state = encoder._state
    tone = sine(440, 0.2)
    for settings in every_combination(channels):
        if settings.application != start.application:
            continue
        for frame in frames(tone):  # a live state, not a fresh one
            encoder.encode(frame)
        encoder.apply(settings)
        assert encoder.read_back() == settings

        loss = (settings.loss_percent + 7) % 101
        encoder.set_loss(loss)
        assert encoder.read_back() == replace(settings, loss_percent=loss)

        encoder.set_bitrate(settings.bitrate + 1000)
        expected = replace(settings, loss_percent=loss, bitrate=settings.bitrate + 1000)
        assert encoder.read_back() == expected
        assert encoder.settings == expected
    assert encoder._state is state, "changes must not make a new libopus state"
    encoder.close()


def test_channels_and_application_cannot_change_in_place() -> None:
    encoder = OpusEncoder(OpusSettings(bitrate=24000))
    with pytest.raises(ValueError, match="new encoder"):
        encoder.apply(OpusSettings(bitrate=24000, channels=2))
    with pytest.raises(ValueError, match="new encoder"):
        encoder.apply(OpusSettings(bitrate=24000, application="audio"))
    assert encoder.read_back() == OpusSettings(bitrate=24000)
    encoder.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bitrate", 5999),
        ("bitrate", 300001),
        ("channels", 3),
        ("loss_percent", -1),
        ("loss_percent", 101),
        ("complexity", 11),
        ("application", "lowdelay"),
        ("fec", 1),
    ],
)
def test_bad_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        OpusSettings(**{"bitrate": 24000, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kbps", "low", "channels"),
    [(24, True, 1), (24, False, 1), (31, False, 1), (32, True, 1), (32, False, 2), (48, False, 2)],
)
def test_profile_settings(kbps: int, low: bool, channels: int) -> None:
    settings = settings_for_profile(kbps, low)
    assert settings.bitrate == kbps * 1000
    assert settings.channels == channels
    assert settings.fec and settings.loss_percent == 10
    assert not settings.dtx
    assert (settings.application, settings.complexity) == ("voip", 5)


# -- what comes out --------------------------------------------------------------------------


@pytest.mark.parametrize(("kbps", "low"), [(24, True), (48, False)])
def test_sine_round_trip_keeps_frequency_and_level(kbps: int, low: bool) -> None:
    settings = settings_for_profile(kbps, low)
    tone = sine(1000, 2.0)
    encoder = OpusEncoder(settings)
    delay = encoder.lookahead
    packets = [encoder.encode(frame) for frame in frames(tone)]
    encoder.close()
    decoded = decode_with_pyav(packets)
    assert len(decoded) == len(tone)

    # compare one steady second; the delay is found within half a period of the codec's own
    # figure (the VOIP high-pass shifts the phase a little)
    start = RATE // 2
    sent = tone[start : start + RATE].astype(np.float64)
    lag = delay - 20 + best_lag(sent, decoded[start + delay - 20 :], most=40)
    heard = decoded[start + lag : start + lag + RATE]
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(len(heard))))
    peak = float(np.fft.rfftfreq(len(heard), 1 / RATE)[np.argmax(spectrum)])
    assert abs(peak - 1000) <= 2, f"peak at {peak} Hz"
    assert abs(rms_db(heard) - rms_db(sent)) < 2.0
    assert correlation(sent, heard) > 0.95


@pytest.mark.parametrize(("kbps", "low", "codec"), [(24, True, "libopus"), (32, False, "opus")])
def test_speech_round_trip_correlates(speech: np.ndarray, kbps: int, low: bool, codec: str) -> None:
    settings = settings_for_profile(kbps, low)
    encoder = OpusEncoder(settings)
    delay = encoder.lookahead
    packets = [encoder.encode(frame) for frame in frames(speech)]
    encoder.close()
    decoded = decode_with_pyav(packets, codec)

    reference = speech.astype(np.float64)
    lag = best_lag(reference, decoded)
    assert abs(lag - delay) <= 16, f"decoded speech lags {lag} samples, codec delay is {delay}"
    aligned = decoded[lag:]
    sent = reference[: len(aligned)]
    assert correlation(sent, aligned) > 0.9
    assert abs(rms_db(aligned) - rms_db(sent)) < 1.0


def test_mean_packet_size_follows_bitrate(speech: np.ndarray) -> None:
    five_seconds = speech[: 5 * RATE]
    noise = np.random.default_rng(5).normal(0, 3000, 5 * RATE).astype(np.int16)
    target = 24000 / 8 / 50
    for signal in (five_seconds, noise):
        sizes = [len(p) for p in encode_all(settings_for_profile(24, True), signal)]
        assert len(sizes) == 250
        assert 0.75 * target <= np.mean(sizes) <= 1.25 * target, f"mean {np.mean(sizes):.1f} B"

    low = encode_all(OpusSettings(bitrate=16000), five_seconds)
    high = encode_all(OpusSettings(bitrate=64000), five_seconds)
    assert sum(map(len, low)) * 2 < sum(map(len, high))


def test_bitrate_change_takes_effect_in_place(speech: np.ndarray) -> None:
    encoder = OpusEncoder(OpusSettings(bitrate=64000))
    chunks = frames(speech[: 4 * RATE])
    before = [len(encoder.encode(frame)) for frame in chunks[:100]]
    encoder.set_bitrate(16000)
    after = [len(encoder.encode(frame)) for frame in chunks[100:]]
    encoder.close()
    assert np.mean(after) * 2 < np.mean(before)


def test_dtx_sends_tiny_packets_in_silence(speech: np.ndarray) -> None:
    signal = np.concatenate([speech[:RATE], np.zeros(2 * RATE, np.int16)])
    quiet = slice(75, 150)  # the last 1.5 s of the silence
    with_dtx = encode_all(OpusSettings(bitrate=24000, dtx=True), signal)[quiet]
    without = encode_all(OpusSettings(bitrate=24000, dtx=False), signal)[quiet]
    assert sum(len(p) <= 2 for p in with_dtx) > 0.8 * len(with_dtx)
    assert all(len(p) > 2 for p in without)


def test_fec_rebuilds_a_lost_packet_better_than_concealment(speech: np.ndarray) -> None:
    def reconstruct(packets: list[bytes], lost: set[int], use_fec: bool) -> np.ndarray:
        """Decode with `lost` packets missing; return the audio made for the missing ones."""
        decoder = opuslib.Decoder(RATE, 1)
        made = {}
        for index, data in enumerate(packets):
            if index in lost:
                continue
            if index - 1 in lost:
                if use_fec:
                    pcm = decoder.decode(data, FRAME_SAMPLES, decode_fec=True)
                else:  # plain loss concealment: a decode without data
                    pcm = opuslib.api.decoder.decode(
                        decoder.decoder_state, None, 0, FRAME_SAMPLES, False, channels=1
                    )
                made[index - 1] = np.frombuffer(pcm, np.int16)
            decoder.decode(data, FRAME_SAMPLES)
        return np.concatenate([made[i] for i in sorted(lost)])

    def scores(settings: OpusSettings) -> tuple[float, float]:
        packets = encode_all(settings, speech)
        whole = opuslib.Decoder(RATE, 1)
        clean = [np.frombuffer(whole.decode(p, FRAME_SAMPLES), np.int16) for p in packets]

        # lose isolated packets that carry speech, so each one has a received successor
        loud = 0.3 * np.sqrt(np.mean(speech.astype(np.float64) ** 2))
        lost = {
            i
            for i in range(5, len(packets) - 1, 7)
            if np.sqrt(np.mean(clean[i].astype(np.float64) ** 2)) > loud
        }
        assert len(lost) >= 15
        original = np.concatenate([clean[i] for i in sorted(lost)])
        return (
            correlation(original, reconstruct(packets, lost, use_fec=True)),
            correlation(original, reconstruct(packets, lost, use_fec=False)),
        )

    fec, concealed = scores(OpusSettings(bitrate=24000, fec=True, loss_percent=20))
    assert fec > 0.9, f"FEC rebuilt the lost packets with correlation {fec:.3f}"
    assert fec > concealed + 0.2, f"FEC {fec:.3f} against concealment {concealed:.3f}"

    # without FEC in the stream, asking the decoder for it gains nothing over concealment
    no_fec, no_fec_concealed = scores(OpusSettings(bitrate=24000, fec=False, loss_percent=20))
    assert abs(no_fec - no_fec_concealed) < 0.05


# -- packets and input -----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_packet_carries_bytes_and_timing(channels: int) -> None:
    settings = OpusSettings(bitrate=32000, channels=channels)
    tone = frames(sine(1000, 0.1))
    encoder = OpusEncoder(settings)
    twin = OpusEncoder(settings)  # libopus is deterministic: same input, same bytes
    for index, frame in enumerate(tone):
        pts = 123456 + index * FRAME_SAMPLES
        packet = encoder.packet(frame, pts)
        assert isinstance(packet, av.Packet)
        assert bytes(packet) == twin.encode(frame)
        assert (packet.pts, packet.dts, packet.duration) == (pts, pts, FRAME_SAMPLES)
        assert packet.time_base == Fraction(1, 48000)
        toc_stereo = bool(bytes(packet)[0] & 0x04)
        assert toc_stereo == (channels == 2)
    encoder.close()
    twin.close()


@pytest.mark.parametrize(
    ("pcm", "named"),
    [
        (np.zeros(959, np.int16), "(959,)"),
        (np.zeros(1920, np.int16), "(1920,)"),
        (np.zeros(960, np.float32), "float32"),
        (np.zeros(960, np.float64), "float64"),
        (np.zeros(960, np.int32), "int32"),
        (np.zeros((1, 960), np.int16), "(1, 960)"),
        (np.zeros((480, 2), np.int16), "(480, 2)"),
        ([0] * 960, "list"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(pcm: object, named: str) -> None:
    encoder = OpusEncoder(OpusSettings(bitrate=24000))
    with pytest.raises(ValueError, match="960") as raised:
        encoder.encode(pcm)  # type: ignore[arg-type]
    assert named in str(raised.value)
    encoder.close()


def test_strided_input_is_encoded_like_a_copy() -> None:
    tone = sine(700, 0.04)
    wide = np.zeros(2 * len(tone), np.int16)
    wide[::2] = tone
    view = wide[::2][:FRAME_SAMPLES]
    assert not view.flags.c_contiguous
    first, second = OpusEncoder(OpusSettings(bitrate=24000)), OpusEncoder(OpusSettings(24000))
    assert first.encode(view) == second.encode(tone[:FRAME_SAMPLES].copy())
    first.close()
    second.close()


def test_closed_encoder_refuses_work() -> None:
    encoder = OpusEncoder(OpusSettings(bitrate=24000))
    encoder.close()
    encoder.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        encoder.encode(np.zeros(FRAME_SAMPLES, np.int16))


def test_the_receivers_decoder_fills_a_lost_packet_from_fec_and_conceals_longer_gaps() -> None:
    from aiortc.codecs.opus import OpusDecoder
    from aiortc.jitterbuffer import JitterFrame

    from mcu.opus import ConcealingOpusDecoder

    # 3 s of a 440 Hz tone encoded by the MCU's own encoder (FEC on, 20 % loss hint)
    encoder = OpusEncoder(OpusSettings(bitrate=24000, channels=1, loss_percent=20))
    t = np.arange(FRAME_SAMPLES * 150) / 48000
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    packets = [encoder.encode(tone[i * 960:(i + 1) * 960]) for i in range(150)]
    lost = {60, 100, 101, 102}
    arrived = [JitterFrame(p, 1000 + 960 * i) for i, p in enumerate(packets) if i not in lost]

    ours = ConcealingOpusDecoder()
    theirs = OpusDecoder()
    ours_out = [f for frame in arrived for f in ours.decode(frame)]
    theirs_out = [f for frame in arrived for f in theirs.decode(frame)]
    # every 20 ms of the stream comes out, in timestamp order; aiortc's leaves the holes
    assert [f.pts for f in ours_out] == [1000 + 960 * i for i in range(150)]
    assert len(theirs_out) == 150 - len(lost)
    assert (ours.recovered, ours.concealed) == (2, 2)

    # the FEC-filled frame carries the tone (its strongest frequency), not silence
    filled = ours_out[60].to_ndarray().reshape(-1, 2)[:, 0].astype(np.float64)
    assert np.sqrt(np.mean(filled ** 2)) > 0.03 * 32767
    spectrum = np.abs(np.fft.rfft(filled * np.hanning(len(filled))))
    peak = np.fft.rfftfreq(len(filled), 1 / 48000)[int(np.argmax(spectrum))]
    assert 400 <= peak <= 480, peak
