"""Types of the compiled kernel `mcu._mix` (see `_mix.pyx`)."""

import numpy as np
from numpy.typing import NDArray

def scale_plane(
    src: NDArray[np.uint8],
    dst: NDArray[np.uint8],
    x: int,
    y: int,
    w: int,
    h: int,
) -> None: ...
def fill_plane(
    dst: NDArray[np.uint8],
    x: int,
    y: int,
    w: int,
    h: int,
    value: int,
) -> None: ...
def fit_rect(
    src_w: int,
    src_h: int,
    x: int,
    y: int,
    w: int,
    h: int,
) -> tuple[int, int, int, int]: ...
def scale_into_tile(
    sy: NDArray[np.uint8],
    su: NDArray[np.uint8],
    sv: NDArray[np.uint8],
    dy: NDArray[np.uint8],
    du: NDArray[np.uint8],
    dv: NDArray[np.uint8],
    x: int,
    y: int,
    w: int,
    h: int,
    bg_y: int = 16,
    bg_u: int = 128,
    bg_v: int = 128,
) -> tuple[int, int, int, int]: ...
def mix_minus(inputs: NDArray[np.int16], out: NDArray[np.int16]) -> None: ...
def mix_all(inputs: NDArray[np.int16], out_row: NDArray[np.int16]) -> None: ...
def levels_dbov(inputs: NDArray[np.int16], out: NDArray[np.float64]) -> None: ...
