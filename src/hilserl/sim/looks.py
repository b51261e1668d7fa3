"""Held-out looks: fixed scene appearances that no training draw produces, standing in for "the real camera".

A look (`env.look`, default ``"nominal"``) fixes the table and backdrop textures, the light (intensity, direction,
colour temperature) and a camera mounting offset, at every reset. Select one to evaluate a policy on an appearance it
never trained on (`hilserl eval … --config_path CFG --env.look=heldout_a`), or to train on it. While a look is
selected the hooks that would draw the same things (`light`, `color_temperature`, `table_texture`, `background`,
`camera_pose`) are overridden by it; the other hooks (distractors, field of view, image noise, cube physics,
latency, backlash) still apply.

Never drawn in training, by construction: a look's texture families are `textures.HELDOUT_FAMILIES`, which training
never draws (its colours may be drawn, on other patterns: training colours span the whole range). Its colour
temperature and camera rotation also lie outside the ranges of `configs/sim_pretrain.json` (checked by
tests/test_sim_randomization.py); its light intensity may lie inside them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hilserl.sim.textures import make_texture


@dataclass(frozen=True)
class Look:
    description: str
    table: tuple[str, tuple, tuple, float]  # (family, colour 1, colour 2, scale)
    backdrop: tuple[str, tuple, tuple, float]
    light_scale: float  # times the nominal diffuse light
    light_tilt: tuple[float, float]  # added to the light direction's x and y before normalising
    color_temperature_k: float  # 6500 is the nominal white
    camera_offset: tuple[float, float, float]  # m, in the gripper body's frame
    camera_rot_deg: float  # rotation of the camera about `camera_rot_axis` (camera frame)
    camera_rot_axis: tuple[float, float, float]
    seed: int  # for the textures' noise


LOOKS: dict[str, Look | None] = {
    "nominal": None,
    "heldout_a": Look(
        "green cutting mat with a white grid under warm light; white-and-black speckled walls",
        table=("grid", (0.12, 0.42, 0.27), (0.95, 0.96, 0.92), 1.0),
        backdrop=("dots", (0.94, 0.94, 0.96), (0.08, 0.08, 0.10), 1.0),
        light_scale=0.9, light_tilt=(0.30, 0.10), color_temperature_k=4000.0,
        camera_offset=(0.004, 0.0, -0.002), camera_rot_deg=4.5, camera_rot_axis=(0.6, 0.8, 0.0), seed=101),
    "heldout_b": Look(
        "white marble with dark veins under cool bright light; blue walls with a white grid",
        table=("marble", (0.95, 0.95, 0.93), (0.12, 0.12, 0.15), 1.0),
        backdrop=("grid", (0.15, 0.25, 0.60), (0.96, 0.96, 0.96), 1.0),
        light_scale=1.2, light_tilt=(-0.20, 0.25), color_temperature_k=10000.0,
        camera_offset=(-0.002, 0.004, 0.0), camera_rot_deg=-4.0, camera_rot_axis=(0.0, 1.0, 0.2), seed=202),
    "heldout_c": Look(
        "dark walnut desk with ochre speckles under dim warm light; navy marble walls",
        table=("dots", (0.16, 0.10, 0.07), (0.80, 0.55, 0.12), 1.0),
        backdrop=("marble", (0.10, 0.16, 0.40), (0.96, 0.94, 0.90), 1.0),
        light_scale=0.7, light_tilt=(0.10, -0.30), color_temperature_k=4200.0,
        camera_offset=(0.0, -0.003, 0.004), camera_rot_deg=5.0, camera_rot_axis=(1.0, 0.0, 0.3), seed=303),
}
LOOK_NAMES = tuple(LOOKS)


@functools.lru_cache(maxsize=16)
def look_texture(name: str, which: str, size: int) -> np.ndarray:
    """The texture ("table" or "backdrop") of look `name`, size×size×3 uint8, the same at every call."""
    look = LOOKS[name]
    if look is None:
        raise ValueError(f"look {name!r} has no textures")
    family, c1, c2, scale = getattr(look, which)
    rng = np.random.default_rng(look.seed + (0 if which == "table" else 1))
    tex = make_texture(family, c1, c2, size, rng, scale)
    tex.setflags(write=False)
    return tex
