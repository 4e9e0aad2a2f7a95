"""``python -m homeserver``: same as the ``homeserver`` console script."""

import sys

from homeserver.app import main

sys.exit(main())
