"""Lambda consumer that delivers Kinesis and SQS records to a registered callback endpoint."""
