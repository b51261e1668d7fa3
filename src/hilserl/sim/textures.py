"""Procedural textures for domain randomization: pattern families and colours, made with numpy.

Training draws and the held-out looks (`hilserl.sim.looks`) use disjoint texture families, so no training draw can
reproduce a held-out table or backdrop: training draws from `TRAIN_FAMILIES` (plain, checker, noise, blobs, stripes,
wood); held-out looks use `HELDOUT_FAMILIES` (grid, dots, marble) only. Colours are drawn from the whole range (any
hue, saturation 0-1, value `TRAIN_VALUE`), the second one either a shade of the first or a colour of its own, as
domain randomization draws them (Tobin et al., 2017): a real table can be any colour, and a policy that only ever
saw muted tables failed on a saturated one (docs/benchmarks.md).

Every pattern is periodic over the texture so the repeats on the table show no seams.
"""

from __future__ import annotations

import colorsys

import numpy as np

TRAIN_FAMILIES = ("plain", "checker", "noise", "blobs", "stripes", "wood")
HELDOUT_FAMILIES = ("grid", "dots", "marble")
TRAIN_VALUE = (0.08, 1.0)
SHADE_SHARE = 0.5  # chance that a texture's second colour is a shade of its first (else a colour of its own)


def training_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours for a training texture: a base of any hue, saturation and value, and either a shade of it (a
    nearby hue, a different value) or an independent colour."""
    h, s, v = rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0), rng.uniform(*TRAIN_VALUE)
    if rng.random() < SHADE_SHARE:
        h2 = (h + rng.uniform(-0.08, 0.08)) % 1.0
        s2 = float(np.clip(s * rng.uniform(0.6, 1.4), 0.0, 1.0))
        v2 = float(np.clip(v * rng.uniform(0.55, 0.92), *TRAIN_VALUE))
    else:
        h2, s2, v2 = rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0), rng.uniform(*TRAIN_VALUE)
    return np.array(colorsys.hsv_to_rgb(h, s, v)), np.array(colorsys.hsv_to_rgb(h2, s2, v2))


def periodic_noise(size: int, rng: np.random.Generator, cells: float) -> np.ndarray:
    """Smooth noise in [0, 1] that tiles: white noise low-passed in the frequency domain (`cells` blobs per side)."""
    white = rng.standard_normal((size, size))
    f = np.fft.fftfreq(size) * size
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    smooth = np.fft.ifft2(np.fft.fft2(white) * np.exp(-r2 / (2 * max(cells, 0.5) ** 2))).real
    smooth -= smooth.min()
    return smooth / max(float(smooth.max()), 1e-9)


def pattern(family: str, size: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A size×size mixing weight in [0, 1] between a texture's two colours. `scale` > 1 makes the pattern finer."""
    y, x = np.mgrid[0:size, 0:size] / size  # [0, 1) over one tile
    n = max(1, int(round(rng.integers(2, 7) * scale)))  # cells per tile (integer: the tile repeats seamlessly)
    if family == "plain":  # one colour
        return np.zeros((size, size))
    if family == "checker":
        return ((np.floor(x * n) + np.floor(y * n)) % 2).astype(float)
    if family == "noise":
        return periodic_noise(size, rng, cells=1.5 * n)
    if family == "blobs":  # sharp-edged patches (camouflage): smooth noise cut at a level
        return (periodic_noise(size, rng, cells=1.5 * n) > rng.uniform(0.35, 0.65)).astype(float)
    if family == "stripes":
        ky, kx = (n, 0) if rng.random() < 0.5 else (0, n)
        duty = rng.uniform(0.3, 0.7)
        return (((kx * x + ky * y) % 1.0) < duty).astype(float)
    if family == "wood":  # grain: stripes along one axis bent by smooth noise, with a soft profile
        bend = periodic_noise(size, rng, cells=1.5)
        grain = np.sin(2 * np.pi * (3 * n * y + rng.uniform(1, 3) * bend)) * 0.5 + 0.5
        return grain ** rng.uniform(1.0, 3.0) * 0.8 + 0.2 * periodic_noise(size, rng, cells=2 * n)
    if family == "grid":  # a cutting mat: thin lines on a plain ground
        width = 0.06
        return np.maximum((x * 2 * n) % 1.0 < width, (y * 2 * n) % 1.0 < width).astype(float)
    if family == "dots":  # round speckles on a lattice
        m = 3 * n
        cx, cy = (x * m) % 1.0 - 0.5, (y * m) % 1.0 - 0.5
        return (cx ** 2 + cy ** 2 < 0.12 ** 2).astype(float)
    if family == "marble":  # thin dark veins in a pale stone
        warp = periodic_noise(size, rng, cells=2.0)
        veins = np.abs(np.sin(2 * np.pi * (n * x + 2.0 * warp)))
        return (veins < 0.12).astype(float) * 0.8 + 0.2 * periodic_noise(size, rng, cells=4 * n)
    raise ValueError(f"texture family: expected one of {TRAIN_FAMILIES + HELDOUT_FAMILIES}, got {family!r}")


def make_texture(family: str, c1, c2, size: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A size×size×3 uint8 texture: `family`'s pattern mixing colour `c1` (weight 0) into `c2` (weight 1)."""
    w = pattern(family, size, rng, scale)[..., None]
    rgb = np.asarray(c1, float)[:3] * (1.0 - w) + np.asarray(c2, float)[:3] * w
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def draw_training_texture(rng: np.random.Generator, size: int, scale_range=(0.5, 2.0)) -> tuple[np.ndarray, dict]:
    """A random training texture and what was drawn (family, colours, scale)."""
    family = str(rng.choice(TRAIN_FAMILIES))
    c1, c2 = training_colours(rng)
    scale = float(rng.uniform(*scale_range))
    tex = make_texture(family, c1, c2, size, rng, scale)
    return tex, {"family": family, "colours": (c1.tolist(), c2.tolist()), "scale": scale}


def blackbody_gain(kelvin: float) -> np.ndarray:
    """RGB gains of a light at `kelvin` relative to 6500 K (1, 1, 1); warm lights raise red and lower blue.

    Tanner Helland's fit of the blackbody colour (1000–40000 K), normalised at 6500 K."""
    def rgb(k: float) -> np.ndarray:
        t = k / 100.0
        r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
        g = 99.4708025861 * np.log(t) - 161.1195681661 if t <= 66 else 288.1221695283 * (t - 60) ** -0.0755148492
        b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * np.log(t - 10) - 305.0447927307)
        return np.clip(np.array([r, g, b]), 1.0, 255.0)

    return rgb(float(kelvin)) / rgb(6500.0)
