"""`volley dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits 2048] [--dir DIR]`.

Responsible for: writing a new private key as PEM (mode 0600, never over an existing
file) and printing what to do with it: the DNS TXT record to publish and the
`[dkim."DOMAIN"]` table to add to the configuration.
Not responsible for: publishing the record, or signing (engine.auth.dkim).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from engine.auth.dkim import DkimError, load_key

__all__ = ["add_parser", "keygen", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dkim", help="DKIM keys: `volley dkim keygen DOMAIN SELECTOR`")
    dsub = p.add_subparsers(dest="dkim_command", required=True)
    k = dsub.add_parser("keygen", help="write a signing key and print its DNS record")
    k.add_argument("domain", help="signing domain (d=), e.g. example.com")
    k.add_argument("selector", help="selector (s=), e.g. s2026")
    k.add_argument("--type", choices=("rsa", "ed25519"), default="rsa")
    k.add_argument("--bits", type=int, default=2048, help="RSA key size (>= 1024; 2048 advised)")
    k.add_argument("--dir", default=".", help="where to write DOMAIN.SELECTOR.pem")


def keygen(domain: str, selector: str, kind: str, bits: int, directory: Path) -> Path:
    """Write the key file and return its path.

    Raises:
        DkimError: bad size, or the file exists already (a key in use is never replaced).
    """
    if kind == "rsa" and not 1024 <= bits <= 8192:
        raise DkimError(f"--bits {bits}: RSA keys for DKIM are 1024-8192 bits (2048 advised)")
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{domain}.{selector}.pem"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise DkimError(f"{path} exists: choose a new selector to rotate keys") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return path


def run(args: argparse.Namespace) -> int:
    domain = args.domain.lower().rstrip(".")
    try:
        path = keygen(domain, args.selector, args.type, args.bits, Path(args.dir))
        key = load_key(path, domain, args.selector)
    except DkimError as e:
        print(f"volley: dkim keygen: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} (mode 0600)")
    print("\nPublish this DNS record:\n")
    print(key.dns_record())
    print("\nand add to the configuration:\n")
    print(f'[dkim."{domain}"]\nselector = "{args.selector}"\nkey = "{path.resolve()}"')
    return 0
