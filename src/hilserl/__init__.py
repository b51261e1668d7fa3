"""hilserl: human-in-the-loop sample-efficient RL (HIL-SERL) for the SO-101 arm."""

import os as _os
import sys as _sys
import warnings as _warnings

from hilserl.sim.rendering import choose_gl_backend as _choose_gl_backend

_MUJOCO_FIRST = "mujoco" in _sys.modules and not _os.environ.get("MUJOCO_GL")
_choose_gl_backend()  # must run before MuJoCo is first imported: MuJoCo picks its GL backend at import
if _MUJOCO_FIRST and _os.environ.get("MUJOCO_GL"):
    _warnings.warn("mujoco was imported before hilserl, so MuJoCo chose its GL backend without MUJOCO_GL and "
                   "headless rendering will fail; import hilserl first or set MUJOCO_GL=egl (or osmesa)",
                   RuntimeWarning, stacklevel=2)

__version__ = "0.1.0"
