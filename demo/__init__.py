"""`make demo`: Volley delivering a few thousand personalised messages to a mini internet.

Modules: `world` (the destinations: a DNS server and SMTP receivers on 127.0.0.x, built
from tests.support's real components), `mail` (the recipient list and personalised
messages), `summary` (what happened, read from the delivery log: a pure function) and
`run` (starts the real `volley run`, drops the mail, shows `volley top` until the queue
drains, prints the summary).  Nothing here can reach beyond 127.0.0.0/8: the DNS server
answers only names under .test, and every address it hands out is a loopback one.
"""
