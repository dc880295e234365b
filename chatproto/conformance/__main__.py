"""``python -m chatproto.conformance``: the same as ``chatproto-conformance``."""

import sys

from .cli import main

sys.exit(main())
