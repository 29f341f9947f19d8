"""The fault harness: the real services on the local backend, in virtual time, under injected faults."""
