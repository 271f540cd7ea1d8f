"""dranet_netlink_agent."""
