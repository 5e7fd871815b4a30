"""What the run learns from verdicts: the agreement store and the calibration map used at run time."""
