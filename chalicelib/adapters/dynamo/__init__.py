"""The DynamoDB store, through PynamoDB, split by aggregate. Table layouts and access patterns:
docs/storage.md."""
