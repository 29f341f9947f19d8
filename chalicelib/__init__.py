"""Everything the Lambda functions run: domain, services, adapters and the HTTP layer."""
