"""dranet_nri_hook."""
