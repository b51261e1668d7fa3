"""Test-wide settings: one torch thread, so the suite never oversubscribes the cores next to a training run (two
processes that each spin-wait on every core can slow each other down tenfold) and timings stay predictable."""

import torch

import hilserl  # noqa: F401  (chooses the headless GL backend before any test module imports mujoco)

torch.set_num_threads(1)
