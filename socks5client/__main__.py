"""``python -m socks5client``: run a Python program through a SOCKS5 proxy.

The logic is in :mod:`socks5client._cli`; this module is also the target
of the ``socks5client`` console script.
"""

from __future__ import annotations

import sys

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
