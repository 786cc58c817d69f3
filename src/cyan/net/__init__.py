"""The network as a device sees it: DNS resolution with the servers DHCP handed out.

Below both the virtual device and ``cyan doctor``, which resolve the same way.
"""
