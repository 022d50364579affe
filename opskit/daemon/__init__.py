"""The scheduler daemon: jobs from the config, run on their schedules, reported."""
