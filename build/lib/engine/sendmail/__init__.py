"""volley-sendmail: the sendmail-compatible command (README "Sendmail").

Modules: `options` (the command line), `message` (stdin -> the drop's bytes and
envelope, checked by intake's parser), `maildrop` (the durable write into
<spool>/incoming/), `session` (-bs: SMTP on stdin/stdout), `main` (the console script),
`exits` (sysexits statuses).
Not responsible for: anything `volley run` does; the command needs no running Volley and
no network port.
"""
