"""edgeae.firmware_sim: the flight-like runtime. Depends on numpy and one interpreter; never imports torch.

Installed as ``edgeae.firmware_sim`` (the folder sits at the repository top).
"""
