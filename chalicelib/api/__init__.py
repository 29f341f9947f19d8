"""The HTTP layer: request parsing and checks, auth, error mapping, the OpenAPI description; the JSON
shapes it answers with are chalicelib/domain/contract.py."""
