"""Node sandbox: a whole dranet node on one machine, and stand-ins for absent peers."""
