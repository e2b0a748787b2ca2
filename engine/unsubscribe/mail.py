"""The `mailto:` unsubscribe route: a message sent to `unsubscribe.mailto` -> its claim.

Responsible for: `claim_from_mail` - the raw message a reader's mail client sent to the
`mailto:` URI of List-Unsubscribe (engine.unsubscribe.headers puts the token in its
`subject=`) -> the verified claim (who, from which sender domain, which list).  The
token decides, never the message's From: anyone can write any From.
Not responsible for: receiving the message (the SMTP listener keeps mail for
`smtpd.bounce_domains` in <spool>/feedback/: engine.feedback.inbox) or acting on the
claim: the caller hands it to the supervisor like a one-click POST
(engine.suppress.client.SuppressClient.add with engine.suppress.service.unsubscribe_entry).
The lead wires the call where mail for the `mailto` address is recognised.
"""

from __future__ import annotations

import email.parser
import email.policy

from engine.unsubscribe.token import Claim, Keyring, TokenError, verify

__all__ = ["claim_from_mail"]

MAX_HEAD = 64 * 1024  # only the header section is read


def claim_from_mail(raw: bytes, ring: Keyring) -> Claim:
    """Raises TokenError: "malformed" when the Subject carries no token, "forged" when
    its token does not verify."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw[: MAX_HEAD if end < 0 else min(end + 2, MAX_HEAD)]
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    subject = str(msg.get("Subject") or "")
    forged: TokenError | None = None
    # "unsubscribe TOKEN", maybe behind "Re:" or a client's "Fwd:"; a token has no spaces.
    for word in reversed(subject.split()):
        if len(word) < 24:
            continue
        try:
            return verify(ring, word)
        except TokenError as e:
            if e.kind == "forged":
                forged = e
    raise forged or TokenError("malformed", "the subject carries no unsubscribe token")
