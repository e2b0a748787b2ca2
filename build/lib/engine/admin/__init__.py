"""Operator queue control: the admin HTTP API, its token, the CLI client and commands.

Modules:
  requests     pure validation of API requests (domains, selectors, durations, limits)
  suspensions  operator suspensions: the pure expiry rule and their persistent store
  token        the bearer token file (created 0600 at first start) and its comparison
  service      supervisor side: what each API call does (store, directives to workers)
  api          routing: method + path + JSON body -> a service call -> status + JSON
  server       the HTTP transport (stdlib ThreadingHTTPServer) bridged into the loop
  runner       what the supervisor starts and stops: all of the above, one-line failures
  client       the CLI's HTTP client: finds the API and token from the settings
  commands     `volley suspend|resume|flush|bounce|delete|show` and `queue --list`

Layering: above engine.telemetry, below engine.runtime (the supervisor and the worker
control import from here; nothing here imports engine.runtime).
"""
