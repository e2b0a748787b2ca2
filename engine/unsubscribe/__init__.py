"""RFC 8058 one-click unsubscribe (issue #12 part 4).

Modules:
  token    the secret file and the HMAC tokens: make, verify (no database lookup)
  headers  read From / List-Id / List-Unsubscribe; add List-Unsubscribe(-Post)
  server   the HTTP endpoint in the supervisor: POST unsubscribes, GET confirms only
  mail     the mailto: route: a message to unsubscribe.mailto -> the verified claim

What an unsubscribe does is engine.suppress's: an entry for the recipient, scoped to
the sender domain the token names.
"""
