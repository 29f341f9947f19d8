"""The HTTP layer: request parsing, the JSON shapes of API.md, and error mapping."""
