"""The road to the teacher: a bounded priority queue with merging, shedding and camera fairness."""
