"""Opus encoders for the 20 ms audio mixes, with settings changed in place and read back.

The room's audio worker mixes N-1 every 20 ms (mono int16, 960 samples at 48 kHz). Listeners who
are not speaking share one encoding of the full mix; each active speaker gets its own encoding of
the mix without itself. Every such encoding is one `OpusEncoder`, and its packets go to aiortc's
senders as pre-encoded `av.Packet`s (`pts` in samples, time base 1/48000).

libopus is reached through `opuslib` (a ctypes binding of the system library). Its high-level
`Encoder` class is not used: its FEC and DTX property setters do not pass the value on (opuslib
3.0.1), so every setting goes through the raw CTL calls, and `read_back()` asks libopus for each one
so a test can check what the library really holds.

What the settings do, measured with the system libopus 1.3.1 (VOIP, complexity 5, speech):
- Stereo: the mix is mono, so a stereo encoder gets the same signal in both channels. libopus then
  spends no extra bits (packet sizes and quality equal to mono within 1 %) but about 20 % more CPU
  (~30 µs per 20 ms frame on this machine), which for a handful of encoders per room is nothing.
  Stereo is therefore used from `STEREO_MIN_KBPS` up on profiles that are not low, so the stream
  is already stereo when the mix becomes stereo; low and narrow profiles stay mono.
- In-band FEC: libopus only adds LBRR (redundant copies of the previous frame) when the bitrate
  clears a threshold that rises with the loss hint, and with a hint of 5 % or less it never
  narrows the audio band to make room. With the default hint of 5 % that means no LBRR at all
  below about 34 kbit/s (24 and 32 kbit/s profiles); with a hint of 10 % or more, a 24 kbit/s
  stream drops to wideband and carries LBRR. Feed the measured loss in with `set_loss`.
- DTX: during silence the encoder emits 1-byte packets, with a full one every 400 ms; a sender may
  skip packets of 2 bytes or less.

Thread safety: none, by design. One thread (the room's audio worker) owns each encoder and calls
`encode`, `packet`, `apply`, `set_loss` and `set_bitrate` from that thread only, so a setting never
changes in the middle of an encode. Changes decided elsewhere (e.g. loss from RTCP on the event
loop) are handed to that thread, which applies them between two frames.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
import opuslib
import opuslib.api
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz, per channel
TIME_BASE = Fraction(1, SAMPLE_RATE)

STEREO_MIN_KBPS = 32
# 10 %: with libopus 1.3 a lower hint adds no in-band FEC below ~34 kbit/s, where district
# links need it most; measured loss above this raises it (`set_loss`)
DEFAULT_LOSS_PERCENT = 10
DEFAULT_COMPLEXITY = 5
MIN_BITRATE = 6000  # the lowest rate Opus is specified for
MAX_BITRATE_PER_CHANNEL = 300000  # libopus clamps anything above this

# libopus advises a 4000-byte output buffer; it is allocated once per encoder
_OUTPUT_BYTES = 4000

_APPLICATIONS: dict[str, int] = {
    "voip": opuslib.APPLICATION_VOIP,
    "audio": opuslib.APPLICATION_AUDIO,
}
_APPLICATION_NAMES = {code: name for name, code in _APPLICATIONS.items()}

_ctl = opuslib.api.ctl
_encoder_api = opuslib.api.encoder
_pcm_pointer = opuslib.api.c_int16_pointer


@dataclass(frozen=True)
class OpusSettings:
    """What one Opus encoder is told: rate, channels, FEC and its loss hint, DTX, and effort."""

    bitrate: int  # bit/s
    channels: int = 1
    fec: bool = True
    loss_percent: int = DEFAULT_LOSS_PERCENT  # expected loss, steers in-band FEC
    dtx: bool = False
    application: str = "voip"
    complexity: int = DEFAULT_COMPLEXITY

    def __post_init__(self) -> None:
        if _not_int(self.channels) or self.channels not in (1, 2):
            raise ValueError(f"Opus channels must be 1 or 2, got {self.channels!r}")
        top = MAX_BITRATE_PER_CHANNEL * self.channels
        if _not_int(self.bitrate) or not MIN_BITRATE <= self.bitrate <= top:
            raise ValueError(
                f"Opus bitrate must be an integer in {MIN_BITRATE}..{top} bit/s for "
                f"{self.channels} channel(s), got {self.bitrate!r}"
            )
        if _not_int(self.loss_percent) or not 0 <= self.loss_percent <= 100:
            raise ValueError(
                f"Opus loss_percent must be an integer in 0..100, got {self.loss_percent!r}"
            )
        if _not_int(self.complexity) or not 0 <= self.complexity <= 10:
            raise ValueError(
                f"Opus complexity must be an integer in 0..10, got {self.complexity!r}"
            )
        if not isinstance(self.fec, bool) or not isinstance(self.dtx, bool):
            raise ValueError(f"Opus fec and dtx must be booleans, got {self.fec!r}, {self.dtx!r}")
        if self.application not in _APPLICATIONS:
            known = ", ".join(repr(name) for name in _APPLICATIONS)
            raise ValueError(f"Opus application must be one of {known}, got {self.application!r}")


def _not_int(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool)


@functools.cache  # the mixer asks for every site on every 20 ms tick
def settings_for_profile(audio_kbps: int, low_profile: bool) -> OpusSettings:
    """The encoder settings for a profile's audio rate.

    Mono on low profiles and below `STEREO_MIN_KBPS`, stereo (the mono mix in both channels)
    otherwise; in-band FEC on with the default loss hint, DTX off, VOIP tuning, complexity 5.
    """
    stereo = not low_profile and audio_kbps >= STEREO_MIN_KBPS
    return OpusSettings(bitrate=audio_kbps * 1000, channels=2 if stereo else 1)


class OpusEncoder:
    """One libopus encoder state fed 20 ms mono mixes; owned by one thread (see the module)."""

    def __init__(self, settings: OpusSettings) -> None:
        self._channels = settings.channels
        self._application = settings.application
        self._state: Any = _encoder_api.create_state(
            SAMPLE_RATE, settings.channels, _APPLICATIONS[settings.application]
        )
        self._output = ctypes.create_string_buffer(_OUTPUT_BYTES)
        self._stereo = np.empty(FRAME_SAMPLES * 2, np.int16) if settings.channels == 2 else None
        self._settings = settings
        self._push(settings)
        logger.debug("opus encoder created %s", _describe(settings))

    @property
    def settings(self) -> OpusSettings:
        """The settings last applied (what `read_back()` should report)."""
        return self._settings

    @property
    def lookahead(self) -> int:
        """Codec delay in samples at 48 kHz: decoded audio lags the input by about this much."""
        return int(_encoder_api.encoder_ctl(self._live_state(), _ctl.get_lookahead))

    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode one 20 ms mono int16 frame into one Opus packet."""
        frame = _checked_frame(pcm)
        if self._stereo is not None:
            self._stereo[0::2] = frame
            self._stereo[1::2] = frame
            frame = self._stereo
        size = int(
            _encoder_api.libopus_encode(
                self._live_state(),
                frame.ctypes.data_as(_pcm_pointer),
                FRAME_SAMPLES,
                self._output,
                _OUTPUT_BYTES,
            )
        )
        if size < 0:
            raise opuslib.OpusError(size)
        return ctypes.string_at(self._output, size)

    def packet(self, pcm: np.ndarray, pts: int) -> av.Packet[Any]:
        """Encode one frame into an `av.Packet` for aiortc's pre-encoded path; `pts` in samples."""
        packet = av.Packet(self.encode(pcm))
        packet.pts = pts
        packet.dts = pts
        packet.time_base = TIME_BASE
        packet.duration = FRAME_SAMPLES
        return packet

    def apply(self, settings: OpusSettings) -> None:
        """Change rate, FEC, loss hint, DTX and complexity in place (same state, no reset)."""
        if settings.channels != self._channels or settings.application != self._application:
            raise ValueError(
                f"channels and application are fixed when an Opus encoder is made "
                f"({self._channels}, {self._application!r}); got ({settings.channels}, "
                f"{settings.application!r}): make a new encoder instead"
            )
        self._push(settings)
        logger.debug("opus encoder now %s", _describe(settings))

    def set_loss(self, percent: int) -> None:
        """Change the expected-loss hint (e.g. from measured loss) in place."""
        self.apply(dataclasses.replace(self._settings, loss_percent=percent))

    def set_bitrate(self, bps: int) -> None:
        """Change the target bitrate in place."""
        self.apply(dataclasses.replace(self._settings, bitrate=bps))

    def read_back(self) -> OpusSettings:
        """Ask libopus for every setting; channels are those the state was made with."""
        state = self._live_state()

        def query(request: Any) -> int:
            return int(_encoder_api.encoder_ctl(state, request))

        application = query(_ctl.get_application)
        if application not in _APPLICATION_NAMES:
            raise RuntimeError(f"libopus reports an unknown application: {application}")
        return OpusSettings(
            bitrate=query(_ctl.get_bitrate),
            channels=self._channels,
            fec=query(_ctl.get_inband_fec) != 0,
            loss_percent=query(_ctl.get_packet_loss_perc),
            dtx=query(_ctl.get_dtx) != 0,
            application=_APPLICATION_NAMES[application],
            complexity=query(_ctl.get_complexity),
        )

    def close(self) -> None:
        """Free the libopus state; the encoder cannot be used afterwards."""
        state, self._state = self._state, None
        if state is not None:
            _encoder_api.destroy(state)

    def __del__(self) -> None:
        if getattr(self, "_state", None) is not None:
            self.close()

    def _push(self, settings: OpusSettings) -> None:
        # raw CTLs: opuslib's own FEC and DTX setters drop the value
        state = self._live_state()
        _encoder_api.encoder_ctl(state, _ctl.set_bitrate, settings.bitrate)
        _encoder_api.encoder_ctl(state, _ctl.set_complexity, settings.complexity)
        _encoder_api.encoder_ctl(state, _ctl.set_inband_fec, int(settings.fec))
        _encoder_api.encoder_ctl(state, _ctl.set_packet_loss_perc, settings.loss_percent)
        _encoder_api.encoder_ctl(state, _ctl.set_dtx, int(settings.dtx))
        self._settings = settings

    def _live_state(self) -> Any:
        if self._state is None:
            raise RuntimeError("this Opus encoder is closed")
        return self._state


def _checked_frame(pcm: object) -> np.ndarray:
    """`pcm` as a C-contiguous int16 array of one frame, or a ValueError saying what is wrong."""
    if not isinstance(pcm, np.ndarray):
        raise ValueError(
            f"pcm must be a numpy int16 array of {FRAME_SAMPLES} samples, got {type(pcm).__name__}"
        )
    if pcm.dtype != np.int16 or pcm.shape != (FRAME_SAMPLES,):
        raise ValueError(
            f"pcm must be mono int16 of shape ({FRAME_SAMPLES},) (20 ms at 48 kHz), "
            f"got shape {pcm.shape} dtype {pcm.dtype}"
        )
    return np.ascontiguousarray(pcm)


def _describe(settings: OpusSettings) -> str:
    return (
        f"bitrate={settings.bitrate} channels={settings.channels} fec={settings.fec} "
        f"loss={settings.loss_percent}% dtx={settings.dtx} app={settings.application} "
        f"complexity={settings.complexity}"
    )


class ConcealingOpusDecoder:
    """An Opus decoder for aiortc's receivers that fills lost packets instead of skipping them.

    aiortc's own decoder decodes what arrives and nothing else, so every lost packet is a hole
    in the audio. Here a gap in the RTP timestamps is filled before the packet that ends it: the
    last missing frame from that packet's in-band FEC data (when the sender encoded some, as the
    MCU's own encoders do), earlier ones by libopus's packet-loss concealment. Output: s16
    stereo 48 kHz frames, as aiortc's decoder gives. One receiver thread owns each instance.
    """

    MAX_FILL = 5  # frames filled per gap at most; a longer one is a pause, not a loss

    def __init__(self) -> None:
        self._state: Any = opuslib.api.decoder.create_state(SAMPLE_RATE, 2)
        self._next: int | None = None  # the timestamp the next packet should carry
        self._frame = FRAME_SAMPLES  # samples in the last packet
        self.concealed = 0
        self.recovered = 0

    def decode(self, encoded_frame: Any) -> list[av.AudioFrame]:
        data: bytes = encoded_frame.data
        timestamp: int = encoded_frame.timestamp
        frames = []
        if self._next is not None:
            gap = (timestamp - self._next) % (1 << 32)
            missing = gap // self._frame if gap < (1 << 31) else 0
            if 0 < missing <= self.MAX_FILL:
                at = self._next
                for _ in range(missing - 1):
                    frames.append(self._frame_of(self._pcm(None, self._frame, False), at))
                    self.concealed += 1
                    at += self._frame
                frames.append(self._frame_of(self._pcm(data, self._frame, True), at))
                self.recovered += 1
        samples = opuslib.api.decoder.get_nb_samples(self._state, data, len(data))
        pcm = self._pcm(data, max(samples, 120), False)
        frames.append(self._frame_of(pcm, timestamp))
        self._frame = max(samples, 120)
        self._next = (timestamp + self._frame) % (1 << 32)
        return frames

    def _pcm(self, data: bytes | None, samples: int, fec: bool) -> bytes:
        try:
            pcm = opuslib.api.decoder.decode(
                self._state, data, len(data) if data else 0, samples, fec, channels=2
            )
        except opuslib.OpusError:
            pcm = bytes(samples * 4)  # a packet libopus refuses: silence for its duration
        return bytes(pcm)

    @staticmethod
    def _frame_of(pcm: bytes, timestamp: int) -> av.AudioFrame:
        samples = np.frombuffer(pcm, np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = timestamp
        frame.time_base = TIME_BASE
        return frame


def install_concealing_decoder() -> None:
    """Make aiortc's receivers in this process decode Opus with `ConcealingOpusDecoder`."""
    import aiortc.rtcrtpreceiver

    receiver_module: Any = aiortc.rtcrtpreceiver
    original = receiver_module.get_decoder
    if getattr(original, "conceals", False):
        return

    def get_decoder(codec: Any) -> Any:
        if codec.mimeType.lower() == "audio/opus":
            return ConcealingOpusDecoder()
        return original(codec)

    get_decoder.conceals = True  # type: ignore[attr-defined]
    receiver_module.get_decoder = get_decoder
