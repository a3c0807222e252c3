"""The guards of the relevance normalisation (``harness.train.losses.relevance_weights``), named without torch
so that the trainer's options (``harness.train.config``) can offer them."""

from __future__ import annotations

WEIGHT_GUARDS = ("clamp", "softmax", "raw", "uniform")
