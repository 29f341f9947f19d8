"""The `fastlane` command line: a client of fastlane's HTTP and websocket API (docs/cli.md)."""
__version__ = "0.1.0"
