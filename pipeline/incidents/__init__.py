"""From student reports to incidents: safety evidence, the sliding window, the escalation policy,
keyframe sequences and the thresholds in force."""
