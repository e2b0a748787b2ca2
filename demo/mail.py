"""The demo's mailing: a recipient list over the planned destinations and one
personalised message per recipient (name, subject, body and numbers of its own).

Responsible for: `recipients` (deterministic for a seed: who gets mail at which domain,
with the local-part prefixes that make a test receiver greylist or reject, see
demo.world) and `compose` (the message bytes, built by tests.support.internet.message).
Not responsible for: dropping the files (demo.run) or what happens to them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from demo.world import SENDER, Destination, Kind
from tests.support.internet import message

__all__ = ["Recipient", "compose", "recipients"]

FIRST = (
    "Anna Ben Chloe Daniel Emma Felix Grace Hugo Isla Jack Karin Liam Maya Noah Olivia "
    "Paul Quinn Rosa Sam Tara Umar Vera Will Xena Yusuf Zoe Aisha Bruno Clara Diego Elif "
    "Farid Greta Hana Ivan Julia Kenji Lena Marco Nadia Omar Priya Rafael Sofia Tomas"
).split()
LAST = (
    "Adams Berg Costa Dubois Evans Fischer Garcia Hansen Ito Jensen Kowalski Larsen "
    "Moreau Nagy Okafor Petrov Quist Rossi Silva Tanaka Urban Varga Weber Xu Young Zimmer"
).split()
CITIES = "Lisbon Oslo Lyon Graz Porto Turku Gdansk Cork Bergen Leeds Ghent Malmo".split()
PRODUCTS = (
    "rain jacket|trail shoes|espresso grinder|reading lamp|linen sheets|camping stove|"
    "wool scarf|desk chair|bike light|tea set|garden hose|travel pillow"
).split("|")
MONTHS = "January February March April May June July August September October".split()


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    first: str
    last: str
    domain: str
    kind: Kind
    seq: int


def recipients(destinations: list[Destination], count: int, seed: int = 1) -> list[Recipient]:
    """`count` distinct recipients spread over `destinations` by weight.

    Greylisting domains defer everyone once (`flaky1-`) and one in four twice (`flaky2-`);
    at a strict domain one in three does not exist (`permfail-`), and one in a hundred
    elsewhere (every real list has a few)."""
    rng = random.Random(seed)
    domains = rng.choices(destinations, weights=[d.weight for d in destinations], k=count)
    out = []
    for seq, dest in enumerate(domains):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first}.{last}{seq}".lower()
        unknown = rng.random() < (1 / 3 if dest.kind is Kind.STRICT else 0.01)
        if unknown and dest.kind is not Kind.TYPO:
            local = f"permfail-{local}"
        elif dest.kind is Kind.GREYLIST:
            local = f"flaky{2 if rng.random() < 0.25 else 1}-{local}"
        out.append(Recipient(f"{local}@{dest.domain}", first, last, dest.domain, dest.kind, seq))
    return out


def compose(r: Recipient) -> bytes:
    """One personalised message for `r` (plain text, CRLF, its own Message-ID)."""
    rng = random.Random(r.seq)
    product, city = rng.choice(PRODUCTS), rng.choice(CITIES)
    order = 100000 + rng.randrange(900000)
    kind = r.seq % 4
    if kind == 0:
        subject = f"{r.first}, your order #{order} has shipped"
        lines = [
            f"Good news, {r.first}: your {product} left our warehouse in {city} today.",
            f"Order #{order} should reach you within {rng.randint(2, 5)} working days.",
        ]
    elif kind == 1:
        pct = rng.choice((10, 15, 20, 25))
        subject = f"{r.first}, {pct}% off the {product} you looked at"
        lines = [
            f"{r.first}, the {product} you looked at last week is {pct}% off until Sunday.",
            f"Use the code {r.last.upper()[:4]}{pct} at checkout.",
        ]
    elif kind == 2:
        month = rng.choice(MONTHS)
        subject = f"Your {month} statement, {r.first} {r.last}"
        lines = [
            f"Dear {r.first} {r.last},",
            f"your {month} statement is ready: {rng.randint(1, 9)} orders, "
            f"{rng.randint(20, 900)}.{rng.randint(0, 99):02d} EUR in all.",
        ]
    else:
        items = rng.randint(2, 6)
        subject = f"{r.first}, you left {items} items in your basket"
        lines = [
            f"Hi {r.first}, your basket still holds {items} items, including a {product}.",
            "We kept it for you for another 7 days.",
        ]
    body = "\r\n".join(
        [
            f"Hello {r.first},",
            "",
            *lines,
            "",
            f"Customer number {r.seq:06d} - you signed up in {city}.",
            "",
            "-- ",
            "shop.test, 1 Example Street",
            f"Unsubscribe: https://shop.test/u/{r.seq:06d}{order}",
        ]
    )
    return message(f"Shop <{SENDER}>", [r.address], subject=subject, body=body, seq=r.seq)
