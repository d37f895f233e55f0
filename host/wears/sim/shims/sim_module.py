"""An empty module: sim_frozen makes each frozen module imported after boot from it."""
