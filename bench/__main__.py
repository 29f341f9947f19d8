"""`python -m bench` (what `make bench` runs): every figure, one table, one JSON file."""
import sys

from .run import main

sys.exit(main())
