"""Fixtures for the loopback S3 server (moto_server over HTTP). Owned by the S3 work."""
