"""Issue #14, finding 7: an ASCII local part at an IDN domain needs no SMTPUTF8.

`bob@bücher.test` to a server without SMTPUTF8 was bounced 553 5.6.7, although the
server takes `RCPT TO:<bob@xn--bcher-kva.test>` and Volley routes on that A-label anyway
(RFC 5890/5891).  Only a non-ASCII local part needs SMTPUTF8 (RFC 6531 §3.2): that one
still bounces 5.6.7 at such a server.
"""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for

BOB = "bob@bücher.test"
JORG = "jörg@bücher.test"
A_LABEL = "xn--bcher-kva.test"


def test_idn_domain_goes_out_as_its_a_label_without_smtputf8(net, volley) -> None:
    (rx,) = net.domain(A_LABEL, smtputf8=False)
    v = volley(workers=1)
    v.drop(message("news@sender.test", [BOB]))
    v.drop(message("news@sender.test", [JORG], seq=2))
    wait_for(lambda: v.count("delivered") + v.count("bounced") == 2, timeout=20, message=v.log)
    (delivered,) = v.events("delivered")
    assert delivered["rcpt"] == BOB
    assert [m.rcpt_tos for m in rx.messages] == [(f"bob@{A_LABEL}",)]
    (bounced,) = v.events("bounced")
    assert bounced["rcpt"] == JORG and bounced["enhanced"] == "5.6.7"
    assert v.stop() == 0
