"""Suite-wide settings: keep DDS traffic on this machine, torch on few threads, Ctrl-C live.

The machines that run this suite have 2 cores; several torch processes with default
thread pools would oversubscribe them and slow every test. A suite started as a
background job (`make test &`, nohup) inherits an ignored SIGINT, and so would every
process it starts; the Ctrl-C tests need Python's default handler back.
"""

import os
import signal

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
signal.signal(signal.SIGINT, signal.default_int_handler)
