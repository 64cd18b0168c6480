"""On-disk stores. ``storage_layout.md`` is the contract of each one."""
