"""``python -m appservices.alerts -c config/alerts.yaml``"""

import sys

from .app import main

sys.exit(main())
