"""Mail that comes back to the senders' bounce domains (`smtpd.bounce_domains`).

Modules: `report` (the values: FeedbackReport, RecipientStatus, Complaint), `parse`
(bytes -> report, never raises) with `dsn` (RFC 3464) and `arf` (RFC 5965) and their
shared `fields`; `inbox` (the durable <spool>/feedback/ directory: `store` is what the
SMTP listener calls); `records` (report -> delivery-log records); `service` (worker 0's
processor).
Not responsible for: receiving over SMTP (engine.smtpd), suppressing addresses (a later
issue consumes the same values).
"""
