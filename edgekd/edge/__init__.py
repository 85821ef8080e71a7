"""The edge: device profiles, the transports (local, SSH, adb) and what a benchmark run ships to a device."""
