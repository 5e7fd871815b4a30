"""What happens to a frame before a model sees it: the change gate, the keyframe budget, encoding once."""
