"""opskit: Docker volume backup and restore, port audit, and a verified-backup scheduler."""

__version__ = "0.1.0"
