"""`python -m fastlane_cli`, the same as `fastlane`."""
from .main import main

main()
