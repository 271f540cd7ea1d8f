"""Node sandbox: a whole dranet node on one machine, and the stand-ins for peers that cannot run here."""
