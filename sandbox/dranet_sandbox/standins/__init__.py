"""Stand-ins for peers that cannot run here (kubelet, API server, NRI runtime).

They speak the real wire protocols.
"""
