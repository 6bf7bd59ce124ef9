"""`python -m auditkit` runs the command line."""

import sys

from auditkit._cli import main

sys.exit(main())
