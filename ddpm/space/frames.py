"""Which frames of a walk x_T -> x_0 to show, and how each is captioned: evenly in log-SNR where the picture forms,
each with its t and SNR (the gallery, the GIF, the forward strip)."""

from __future__ import annotations

import math

import numpy as np

PICTURE_LOG_SNR = -2.0  # below SNR = e^-2 = 0.14, x_t looks like noise to the eye: frames are spent above it


def log_snr(scheduler, t: int) -> float:
    """log SNR(t) = log(abar_t / (1 - abar_t)) at the article's time t >= 1."""
    abar = float(scheduler.alphas_cumprod[int(t) - 1])
    return math.log(abar / (1.0 - abar))


def log_snr_frames(scheduler, times: list[int], count: int, floor: float = PICTURE_LOG_SNR) -> list[int]:
    """Indices of about `count` of the frames at article times `times` (start ... 0), evenly spaced in log-SNR
    above `floor`, where the picture forms.

    Evenly spaced in t, a linear schedule spends most frames where x_t is still noise (SNR < 1 until t ~ 260 of
    1000): the picture only forms in the last quarter. log SNR is the quantity the image's visibility follows
    (signal and noise in decibels), so equal steps in it show equal steps of the picture forming; below `floor`
    every frame looks like the same noise, so only the first (x_T) is kept from there. x_T and x_0 are always kept.
    """
    n = len(times)
    if count >= n:
        return list(range(n))
    noisy = [i for i, t in enumerate(times) if t > 0]
    levels = np.array([log_snr(scheduler, times[i]) for i in noisy])  # increasing along the walk
    low = min(max(levels[0], floor), levels[-1])
    targets = np.linspace(low, levels[-1], count - 1 if low == levels[0] else count - 2)  # x_T apart when skipped
    nearest = np.abs(levels[None, :] - targets[:, None]).argmin(axis=1)
    return sorted({noisy[int(k)] for k in nearest} | {0, n - 1})


SNR_IN_WORDS = "SNR: the signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) of x_t, how much of the picture is left in the noise"


def frame_caption(scheduler, t: int) -> str:
    """ "t = 250 · SNR 1.02": the frame's time and its signal-to-noise ratio abar_t / (1 - abar_t)."""
    return f"t = {t} · SNR {math.exp(log_snr(scheduler, t)):.3g}" if t > 0 else "t = 0 (x_0)"
