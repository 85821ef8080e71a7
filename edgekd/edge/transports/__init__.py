"""Ways to reach a device and run the agent there. ``local`` is a transport like any other."""
