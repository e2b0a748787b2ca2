"""Shaping: how fast and how wide Volley sends to each receiving site, and why.

Adaptive shaping (this helper's part of issue #10): `rules` (reply patterns -> actions,
from data), `replies` (what a throttling reply is), `aimd` (the per-site controller),
`store` (its persistence) and `adaptive` (the supervisor's `Shaper` combining them).
"""
