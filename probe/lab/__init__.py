"""The censorship lab: simulated ISPs in network namespaces with a known truth."""
