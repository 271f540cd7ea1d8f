"""Stand-ins for the peers that cannot run here (kubelet, API server, NRI runtime). They speak the real wire protocols."""
