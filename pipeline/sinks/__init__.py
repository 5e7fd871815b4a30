"""Where events, decisions and snapshots go."""
