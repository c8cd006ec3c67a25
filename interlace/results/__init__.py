"""Results: one contract for every fit, and the result types of each model kind."""
