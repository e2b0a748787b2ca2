"""Volley: an outbound bulk mail delivery engine.

Data flow (one module per stage): drop -> spool -> scheduler -> destination queue
-> connection -> outcome -> log/metrics.  See README.md, "Architecture".
"""
