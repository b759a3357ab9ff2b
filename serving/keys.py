"""``python -m serving.keys create --name crm [--scope scores|viewer|admin] [--rate R [--burst B]]``
and ``python -m serving.keys revoke NAME`` (both take ``--file PATH``).

``create`` makes an API key: ``--scope scores`` (the default; ``--admin`` is ``--scope admin``)
for a CRM or a script, ``viewer`` for a person in the retention workspace, ``admin`` for the
``/v1/admin`` routes as well; ``--rate`` gives it its own rate limit (requests per second).
The key is printed once, alone on the last line of standard output (so a script can take it
with ``tail -n 1``); only its sha256 is stored. Creating a key under an existing name replaces
the old key (rotation): the old one stops working as soon as the server sees the new file.

``revoke`` removes the key called NAME: the running server refuses it from its next request
on, and web sessions signed in with it end. Exit code 2 when there is no such key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.auth import SCOPE_ADMIN, SCOPE_SETS, KeyStoreError, create_key, revoke_key
from serving.config import get_settings

FILE_HELP = "key store (default: CHURN_API_KEYS_FILE or var/api_keys.json)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create or rotate a key; prints it once")
    create.add_argument("--name", required=True, help="client name, e.g. crm")
    create.add_argument(
        "--scope",
        choices=sorted(SCOPE_SETS),
        help="scores (default): every /v1 route but /v1/admin; viewer: the same, for people "
        "in the workspace; admin: /v1/admin too",
    )
    create.add_argument("--admin", action="store_true", help="same as --scope admin")
    create.add_argument(
        "--rate", type=float, help="this key's rate limit, requests per second (default: server's)"
    )
    create.add_argument("--burst", type=int, help="requests the key may send at once (with --rate)")
    create.add_argument("--file", type=Path, help=FILE_HELP)
    revoke = commands.add_parser("revoke", help="remove a key; the server refuses it at once")
    revoke.add_argument("name", help="name of the key to remove")
    revoke.add_argument("--file", type=Path, help=FILE_HELP)
    args = parser.parse_args(argv)

    try:
        path = args.file or get_settings().api_keys_file
        if args.command == "revoke":
            return _revoke(path, args.name)
        key = create_key(
            path,
            args.name,
            admin=args.admin,
            scope=args.scope,
            rate_per_second=args.rate,
            burst=args.burst,
        )
    except (ValueError, KeyStoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scopes = ", ".join(sorted(SCOPE_SETS[SCOPE_ADMIN if args.admin else args.scope or "scores"]))
    print(
        f"API key '{args.name}' (scopes: {scopes}) stored as a hash in {path}. "
        "It is shown once, below; send it in the X-API-Key header.",
        file=sys.stderr,
    )
    print(key)
    return 0


def _revoke(path: Path, name: str) -> int:
    if not revoke_key(path, name):
        print(f"error: {path} holds no key named {name!r}; nothing revoked", file=sys.stderr)
        return 2
    print(
        f"API key '{name}' revoked in {path}; the server refuses it from now on.", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
