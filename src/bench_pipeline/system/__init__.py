"""The machine and its files: device setup and the recorded environment, shared by every backend."""
