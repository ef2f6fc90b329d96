"""``python -m bertnas``: the ``bertnas`` command, for launchers that take a module (``torchrun -m bertnas``)."""

import sys

from bertnas.cli.main import main

sys.exit(main())
