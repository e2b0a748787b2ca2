"""The SMTP submission listener (issue #13): applications submit mail over SMTP.

The package's modules: `protocol` (the sans-IO server session) with `events` (what it
takes and hands out), `arguments` (MAIL/RCPT), `sasl` (the AUTH exchange), `text` (DATA:
its end and its checks) and `replies` (reply lines, refusal reasons); `relay` (who may
relay, pure), `auth` (users file, scrypt hashes, failed-AUTH limit), `message`
(Received:, Date, Message-ID), `server` (the asyncio adapter in each worker), `sockets`
(binding, done by the supervisor), `clients` (the per-client connection count the
supervisor keeps) and `passwd` (`volley passwd`).
Making accepted mail durable is engine.runtime.listener's job (it knows the spool).

Layering: `protocol`, `relay`, `message` and `clients` do no I/O; only `server` imports
asyncio; nothing here imports engine.runtime.
"""
