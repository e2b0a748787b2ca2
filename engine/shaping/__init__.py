"""Shaping: how fast, and over how many connections, Volley sends to each receiver.

Sites (the set of MX hosts a destination resolves to), providers (sites grouped by MX
suffix, with limits from their published guidance), GCRA rate limits, and adaptive
shaping that follows what receivers say.  Decisions here are pure (time is passed in);
the supervisor holds the shared state and the workers ask it (engine.runtime).
"""
