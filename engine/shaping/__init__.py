"""Shaping: how fast, and over how many connections, Volley sends to each receiver.

Sites (the set of MX hosts a destination resolves to), providers (sites grouped by MX
suffix, with limits from their published guidance), GCRA rate limits, and adaptive
shaping that follows what receivers say: `rules` (reply patterns -> actions, from data),
`replies` (what a throttling reply is), `aimd` (the per-site controller), `store` (its
persistence) and `adaptive` (the supervisor's `Shaper` combining them).  Decisions here
are pure (time is passed in); the supervisor holds the shared state and the workers ask
it (engine.runtime).
"""
