"""hilserl: human-in-the-loop sample-efficient RL (HIL-SERL) for the SO-101 arm."""

__version__ = "0.1.0"
