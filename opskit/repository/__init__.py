"""The repository of backups in a store: which to keep (`retention`) and which to show
(`filters`). The record format and the catalog will move here from `opskit.archive.catalog`."""
