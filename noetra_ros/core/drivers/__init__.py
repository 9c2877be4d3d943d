"""ROS-free emulations of the real arm drivers' controllers (and the clients that drive them).

The facts behind every rule here come from /work/shared/reference/driver-interfaces.md, which
cites each one's source file and commit; each module names the section it follows.
"""
