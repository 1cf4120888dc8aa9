"""Suite-wide settings: keep DDS traffic on this machine and torch on few threads.

The machines that run this suite have 2 cores; several torch processes with default
thread pools would oversubscribe them and slow every test.
"""

import os

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
