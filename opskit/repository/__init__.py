"""The backup repository: what a store holds and which backups to keep.

catalog (the record format, validation, ids, listing, finding a backup), snapshots (the record
of a set of backups), retention (restic's forget rules and opskit's guarantees, pure), filters
(which backups `list` shows).
"""
