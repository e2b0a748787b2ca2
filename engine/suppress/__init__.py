"""The suppression list (issue #12 part 3): addresses and domains Volley must not mail.

Modules:
  model     entries, sources, key normalisation, scopes and the matching rule (pure)
  store     the SuppressionStore / SuppressionReader interfaces and their SQLite file
  check     the intake check: one message's recipients -> those to queue, and hits
  rules     what a delivery result adds: hard-bounce categories, the soft-bounce rule
  feed      a worker's outcomes and async bounces -> events for the rules
  client    a worker's requests to the supervisor (acknowledged adds, buffered events)
  service   the supervisor: the one writer, worker messages, unsubscribes, records
  api       the admin API routes (/v1/suppressions)
  csvio     the CSV format of import and export
  commands  `volley suppress add|remove|list|check|import|export`

Who writes <spool>/suppression.db: the supervisor while `volley run` runs (workers,
the unsubscribe endpoint and the admin API all go through it); `volley suppress` itself
while Volley is stopped, under the spool's instance lock.  Workers read it read-only.
Layering: above engine.model, engine.drop and engine.telemetry; below engine.runtime.
"""
