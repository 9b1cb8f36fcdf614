"""`python3 -m curvewatch --help`."""
import sys

from .cli import main

sys.exit(main())
