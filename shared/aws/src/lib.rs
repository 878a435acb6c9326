//! AWS adapters for the core ports (S3, SQS, DynamoDB).
