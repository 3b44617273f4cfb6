"""`python -m tf1tune` runs the CLI."""

import sys

from tf1tune.cli import main

sys.exit(main())
