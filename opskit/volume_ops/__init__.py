"""The low-level steps on volumes and bind paths, which the actions compose.

As borgmatic keeps `borg/` apart from `actions/`: an action decides what to do (which sources,
which backups, what to report); these modules do one step each on a source the caller has
locked: stop its users, back it up, restore a stream into it, list its tree, run a hook.
"""
