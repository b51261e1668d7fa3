"""Fast headless rendering of the scene's cameras.

The GL backend is chosen before MuJoCo is imported (see `choose_gl_backend`, called from ``hilserl/__init__``):
EGL when the library is present (works with Mesa's software renderer, no GPU needed), else OSMesa. Set
``MUJOCO_GL`` yourself to override. Every render skips shadows, reflections, skybox, fog and haze; the model
itself has no multisampling.
"""

from __future__ import annotations

import ctypes.util
import os

import numpy as np

_FAST_OFF = ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX", "mjRND_FOG", "mjRND_HAZE")


def choose_gl_backend() -> str | None:
    """Pick MUJOCO_GL for a headless machine unless the user already did. Returns the choice."""
    # llvmpipe (Mesa's CPU renderer) spends more time coordinating threads than drawing a 128x128 frame
    os.environ.setdefault("LP_NUM_THREADS", "1")
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if os.environ.get("DISPLAY") and ctypes.util.find_library("glfw"):
        return None  # a desktop: MuJoCo's default (GLFW) is fine
    for backend, lib in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(lib):
            os.environ["MUJOCO_GL"] = backend
            if backend == "osmesa":
                os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
            return backend
    return None


class CameraRenderer:
    """Renders named cameras to uint8 H×W×3 arrays, one MuJoCo renderer per image size."""

    def __init__(self, model, height: int, width: int):
        import mujoco

        self._mujoco = mujoco
        self.model = model
        self.renderer = mujoco.Renderer(model, height, width)
        for flag in _FAST_OFF:
            self.renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        self.option = mujoco.MjvOption()
        self.option.geomgroup[:] = 0
        for g in (0, 1, 2):  # world, visual and collision geometry; sites and helpers (group 4) are hidden
            self.option.geomgroup[g] = 1

    def render(self, data, camera: str) -> np.ndarray:
        self.renderer.update_scene(data, camera, self.option)
        return self.renderer.render()

    def upload_textures(self, texids) -> None:
        """Send textures the model's `tex_data` now holds (rewritten by domain randomization) to this renderer."""
        if not len(texids):
            return
        r = self.renderer
        gl, con = getattr(r, "_gl_context", None), getattr(r, "_mjr_context", None)
        if con is None:  # a MuJoCo whose Renderer keeps its context elsewhere: make a new renderer instead
            self.__init__(self.model, r.height, r.width)
            r.close()
            return
        if gl is not None:
            with gl.as_current():
                for t in texids:
                    self._mujoco.mjr_uploadTexture(self.model, con, int(t))
        else:
            for t in texids:
                self._mujoco.mjr_uploadTexture(self.model, con, int(t))

    def close(self) -> None:
        self.renderer.close()
