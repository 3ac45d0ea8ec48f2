"""``python -m xarray_om.cli``."""

import sys

from . import main

sys.exit(main())
