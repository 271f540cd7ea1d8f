"""dranet_kubelet_plugin."""
