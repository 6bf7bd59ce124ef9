"""`python -m auditkit` runs the command line."""

import sys

from auditkit._cli.main import main

sys.exit(main())
