"""``python -m chatproto``: the same as ``chatproto-serve``."""

import sys

from chatproto.cli.serve import main

sys.exit(main())
