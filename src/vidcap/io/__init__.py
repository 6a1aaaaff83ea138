"""Record I/O: faithful JSON (``jsonio``), reading input (``records``), crash-safe output
(``writer``), resuming (``resume``), sharding (``shards``) and merging shard outputs (``merge``).
"""
