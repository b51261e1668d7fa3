"""hilserl: human-in-the-loop sample-efficient RL (HIL-SERL) for the SO-101 arm."""

from hilserl.sim.rendering import choose_gl_backend as _choose_gl_backend

_choose_gl_backend()  # must run before MuJoCo is first imported

__version__ = "0.1.0"
