"""Use cases, written against the ports in chalicelib.ports."""
