"""Adapters behind the ports: aiohttp for HTTP, boto3 (from the Lambda runtime) for AWS.

Imported only when the first invocation builds the dispatcher, so a cold start pays for them once
and an import of the handler stays light.
"""
